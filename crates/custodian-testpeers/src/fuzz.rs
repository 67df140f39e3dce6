//! Seeded fuzzing of our own decoders, run by `cargo test` on stable Rust: every decoder of peer
//! bytes gets a fixed number of random and mutated inputs, so a panic on what a peer sends fails CI.
//! It lives here, in the crate every test suite already depends on, so all decoders share it.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Inputs per decoder: enough to hit every mutation of every seed many times, quick in debug builds.
pub const RUNS: usize = 20_000;

/// Calls `f` with `RUNS` inputs from a fixed seed: random bytes, and mutations of `seeds` (real
/// replies): bit flips, boundary bytes, truncation, duplicated runs, insertions, and two- or
/// four-byte runs (where length fields sit) set to their extremes.
pub fn inputs(seed: u64, seeds: &[&[u8]], mut f: impl FnMut(&[u8])) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..RUNS {
        let input = match seeds.choose(&mut rng) {
            Some(s) if !rng.gen_ratio(1, 5) => mutate(&mut rng, s),
            _ => {
                let len = rng.gen_range(0..64);
                (0..len).map(|_| rng.gen()).collect()
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
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..6) {
            0 if len > 0 => v[rng.gen_range(0..len)] ^= 1 << rng.gen_range(0..8),
            1 if len > 0 => {
                let b = [0, 1, b'\n', b'\r', 0x7f, 0x80, 0xff];
                v[rng.gen_range(0..len)] = *b.choose(rng).unwrap_or(&0);
            }
            2 => v.truncate(rng.gen_range(0..=len)),
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let run = v[a..rng.gen_range(a..=len)].to_vec();
                let at = rng.gen_range(0..=len);
                v.splice(at..at, run);
            }
            4 if len >= 4 => {
                let w = if rng.gen() { 2 } else { 4 };
                let at = rng.gen_range(0..=len - w);
                v[at..at + w].fill(if rng.gen() { 0xff } else { 0 });
            }
            _ => v.insert(rng.gen_range(0..=len), rng.gen()),
        }
    }
    v
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
}
