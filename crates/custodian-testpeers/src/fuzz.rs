//! Seeded fuzzing of our own decoders, run by `cargo test` on stable Rust: every decoder of peer
//! bytes gets a fixed number of random and mutated inputs, so a panic on what a peer sends fails CI.
//! It lives here, in the crate every test suite already depends on, so all decoders share it.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

/// Inputs per decoder: enough to hit every mutation of every seed many times, quick in debug builds.
pub const RUNS: usize = 20_000;

/// Calls `f` with `RUNS` inputs from a fixed seed: random bytes, and mutations of `seeds` (real
/// replies): bit flips, boundary bytes, truncation, duplicated runs, insertions, two- or
/// four-byte runs (where length fields sit) set to their extremes or nudged by a few either
/// way (big- or little-endian: off-by-one lengths), and decimal numbers (RESP and beanstalkd
/// lengths) replaced by a neighbour, zero, a negative or a huge one.
pub fn inputs(seed: u64, seeds: &[&[u8]], mut f: impl FnMut(&[u8])) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..RUNS {
        let input = match seeds.choose(&mut rng) {
            Some(s) if !rng.random_ratio(1, 5) => mutate(&mut rng, s),
            _ => {
                let len = rng.random_range(0..64);
                (0..len).map(|_| rng.random()).collect()
            }
        };
        f(&input);
    }
}

/// The inputs of [`inputs`] as a list, for decoders that must be awaited.
pub fn collect(seed: u64, seeds: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut all = Vec::with_capacity(RUNS);
    inputs(seed, seeds, |i| all.push(i.to_vec()));
    all
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => v[rng.random_range(0..len)] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => {
                let b = [0, 1, b'\n', b'\r', 0x7f, 0x80, 0xff];
                v[rng.random_range(0..len)] = *b.choose(rng).unwrap_or(&0);
            }
            2 => v.truncate(rng.random_range(0..=len)),
            3 if len > 0 => {
                let a = rng.random_range(0..len);
                let run = v[a..rng.random_range(a..=len)].to_vec();
                let at = rng.random_range(0..=len);
                v.splice(at..at, run);
            }
            4 if len >= 4 => {
                let w = if rng.random() { 2 } else { 4 };
                let at = rng.random_range(0..=len - w);
                v[at..at + w].fill(if rng.random() { 0xff } else { 0 });
            }
            5 if len >= 4 => nudge(rng, &mut v),
            6 => renumber(rng, &mut v),
            _ => v.insert(rng.random_range(0..=len), rng.random()),
        }
    }
    v
}

/// Adds -3..=3 (never 0) to a one-, two- or four-byte number, either byte order, wrapping.
fn nudge(rng: &mut StdRng, v: &mut [u8]) {
    let w = *[1, 2, 4].choose(rng).unwrap_or(&1);
    let at = rng.random_range(0..=v.len() - w);
    let delta = *[-3i64, -2, -1, 1, 2, 3].choose(rng).unwrap_or(&1);
    let field = &mut v[at..at + w];
    let big = rng.random::<bool>();
    let mut n: u64 = 0;
    for i in 0..w {
        let b = u64::from(field[if big { i } else { w - 1 - i }]);
        n = n << 8 | b;
    }
    let n = n.wrapping_add_signed(delta);
    for i in 0..w {
        // Truncation to the byte is the point: the field wraps within its width.
        let b = (n >> (8 * (w - 1 - i))) as u8;
        field[if big { i } else { w - 1 - i }] = b;
    }
}

/// Replaces one run of ASCII digits (the decimal lengths and counts of text protocols) by a
/// neighbour, 0, a negative, or a number far too large; without digits, inserts one.
fn renumber(rng: &mut StdRng, v: &mut Vec<u8>) {
    let runs: Vec<(usize, usize)> = digit_runs(v);
    let Some(&(a, b)) = runs.choose(rng) else {
        let at = rng.random_range(0..=v.len());
        v.insert(at, b'0' + rng.random_range(0..10));
        return;
    };
    let old: i128 = std::str::from_utf8(&v[a..b])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let new = match rng.random_range(0..6) {
        0 => old + 1,
        1 => old - 1,
        2 => 0,
        3 => -1,
        4 => i128::from(u32::MAX) + 1,
        _ => i128::from(i64::MAX) + 1,
    };
    v.splice(a..b, new.to_string().into_bytes());
}

fn digit_runs(v: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in v.iter().chain([&b' ']).enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_reach_short_long_and_changed_shapes() {
        let seed: &[u8] = b"+OK ready\r\n";
        let (mut empty, mut longer, mut changed, mut count) = (0, 0, 0, 0);
        inputs(1, &[seed], |i| {
            count += 1;
            empty += usize::from(i.is_empty());
            longer += usize::from(i.len() > seed.len());
            changed += usize::from(i != seed);
        });
        assert_eq!(count, RUNS);
        assert!(empty > 100 && longer > 1000 && changed > RUNS * 9 / 10);
    }

    #[test]
    fn lengths_are_nudged_and_renumbered() {
        // A MySQL-style header (3-byte little-endian length) and a RESP bulk length.
        let (bin, text): (&[u8], &[u8]) = (b"\x0a\x00\x00\x00payload!!\x00", b"$5\r\nhello\r\n");
        let (mut off_by_some, mut huge, mut negative) = (0, 0, 0);
        inputs(2, &[bin, text], |i| {
            off_by_some += usize::from(
                i.len() == bin.len()
                    && (8..=12).contains(&i[0])
                    && i[0] != 10
                    && i[1..] == bin[1..],
            );
            huge += usize::from(
                i.starts_with(b"$4294967296\r\n") || i.starts_with(b"$9223372036854775808\r\n"),
            );
            negative += usize::from(i.starts_with(b"$-1\r\nhello"));
        });
        assert!(
            off_by_some > 5 && huge > 20 && negative > 5,
            "{off_by_some} {huge} {negative}"
        );
        let mut rng = StdRng::seed_from_u64(3);
        let mut v = b"*2\r\n$10\r\n".to_vec();
        let before = v.clone();
        renumber(&mut rng, &mut v);
        assert_ne!(v, before);
        assert_eq!(digit_runs(b"a12b3"), [(1, 3), (4, 5)]);
    }
}
