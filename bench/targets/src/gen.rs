//! Generators: the mixed check file (with its target list for the floor and Python checkers),
//! the large file for `custodian check`, and the one-job lines for enqueue.

use crate::kinds::{addr, Kind};
use std::fmt::Write as _;

/// `gen-checks N HUNG_PERCENT CFG TSV`: N checks, a quarter each ssh, smtp, tcp with banner and
/// http with content; every (100 / HUNG_PERCENT)th one is an ssh check of a hung target. The
/// `otherwise` text records the expected verdict; the TSV is the same list for other checkers.
pub(crate) fn checks(args: &[String]) -> Result<(), String> {
    let [n, hung, cfg, tsv] = args else {
        return Err("usage: gen-checks N HUNG_PERCENT CFG TSV".into());
    };
    let n: usize = n.parse().map_err(|_| format!("bad N {n}"))?;
    let hung: usize = hung
        .parse()
        .map_err(|_| format!("bad HUNG_PERCENT {hung}"))?;
    let every = if hung == 0 {
        usize::MAX
    } else {
        (100 / hung.min(100)).max(1)
    };
    let (mut c, mut t) = (String::new(), String::new());
    let mut used = [0usize; 5];
    for i in 0..n {
        let slot = if i % every == every - 1 { 4 } else { i % 4 };
        let kind = [Kind::Ssh, Kind::Smtp, Kind::Banner, Kind::Http, Kind::Hung][slot];
        let a = addr(kind, used[slot]);
        used[slot] += 1;
        // Writing to a String cannot fail.
        let _ = match kind {
            Kind::Ssh => {
                writeln!(c, "{a} must run ssh on 22 otherwise 'expect-pass'.")
                    .and_then(|_| writeln!(t, "banner\t{a}\t22\tpass\tSSH-"))
            }
            Kind::Smtp => writeln!(c, "{a} must run smtp on 25 otherwise 'expect-pass'.")
                .and_then(|_| writeln!(t, "smtp\t{a}\t25\tpass\t220")),
            Kind::Banner => writeln!(
                c,
                "{a} must run tcp on 7000 with banner '^200 bench' otherwise 'expect-pass'."
            )
            .and_then(|_| writeln!(t, "banner\t{a}\t7000\tpass\t200 bench")),
            Kind::Http => writeln!(
                c,
                "http://{a}/ must run http with content 'custodian-bench-ok' otherwise 'expect-pass'."
            )
            .and_then(|_| writeln!(t, "http\t{a}\t80\tpass\tcustodian-bench-ok")),
            _ => writeln!(c, "{a} must run ssh on 22 otherwise 'expect-fail'.")
                .and_then(|_| writeln!(t, "banner\t{a}\t22\tfail\tSSH-")),
        };
    }
    std::fs::write(cfg, c).map_err(|e| format!("{cfg}: {e}"))?;
    std::fs::write(tsv, t).map_err(|e| format!("{tsv}: {e}"))
}

/// `gen-parse LINES FILE`: per 10 lines one macro of 9 addresses used by two checks, and 7 plain
/// checks of assorted types with options: 25 jobs per 10 lines. Prints the job count.
pub(crate) fn parse_file(args: &[String]) -> Result<(), String> {
    let [lines, path] = args else {
        return Err("usage: gen-parse LINES FILE".into());
    };
    let lines: usize = lines.parse().map_err(|_| format!("bad LINES {lines}"))?;
    let mut s = String::with_capacity(lines * 80);
    let mut jobs = 0;
    for i in 0..lines {
        let g = i / 10;
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let _ = match i % 10 {
            0 => {
                let members: Vec<String> = (1..=9)
                    .map(|m| format!("11.{}.{}.{m}", (g >> 8) & 255, g & 255))
                    .collect();
                writeln!(s, "GROUP_{g} are {}", members.join(", "))
            }
            1 => {
                jobs += 9;
                writeln!(s, "GROUP_{g} must run ssh otherwise 'group {g} ssh down'.")
            }
            2 => {
                jobs += 9;
                writeln!(
                    s,
                    "GROUP_{g} must run tcp on 7000 with banner '^200' between 9-17."
                )
            }
            3 => writeln!(
                s,
                "http://{ip}/status must run http with content 'ok' otherwise 'web {i}'."
            ),
            4 => writeln!(
                s,
                "{ip} must run smtp with subject 'mail {i}' otherwise 'smtp {i}'."
            ),
            5 => writeln!(s, "{ip} must run imap with timeout 10 with retries 2."),
            6 => writeln!(s, "{ip} must run pop3 except between 22-3."),
            7 => writeln!(s, "{ip} must run ftp otherwise 'ftp {i} down'."),
            8 => writeln!(
                s,
                "{ip} must not run openproxy with canary 'http://192.0.2.1:8080/'."
            ),
            _ => writeln!(s, "{ip} must run ssh with banner 'OpenSSH' every 5m."),
        };
        if i % 10 >= 3 {
            jobs += 1;
        }
    }
    std::fs::write(path, s).map_err(|e| format!("{path}: {e}"))?;
    println!("{jobs}");
    Ok(())
}

/// `gen-jobs N FILE`: N distinct one-job lines (a refused port, so a worker would pass them fast).
pub(crate) fn jobs(args: &[String]) -> Result<(), String> {
    let [n, path] = args else {
        return Err("usage: gen-jobs N FILE".into());
    };
    let n: usize = n.parse().map_err(|_| format!("bad N {n}"))?;
    let mut s = String::with_capacity(n * 90);
    for i in 0..n {
        let _ = writeln!(
            s,
            "127.0.0.1 must not run tcp on {} with banner 'x{i}' with timeout 5 with retries 1.",
            crate::kinds::REFUSED_PORT
        );
    }
    std::fs::write(path, s).map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_checks_have_the_asked_share_of_hung_targets() {
        let dir = std::env::temp_dir().join(format!("cb-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cfg, tsv) = (dir.join("c.cfg"), dir.join("t.tsv"));
        let args = ["1000", "5", cfg.to_str().unwrap(), tsv.to_str().unwrap()].map(String::from);
        checks(&args).unwrap();
        let c = std::fs::read_to_string(&cfg).unwrap();
        let t = std::fs::read_to_string(&tsv).unwrap();
        assert_eq!(c.lines().count(), 1000);
        assert_eq!(c.matches("expect-fail").count(), 50);
        assert_eq!(t.lines().filter(|l| l.contains("\tfail\t")).count(), 50);
        assert!(c
            .lines()
            .all(|l| !l.contains("127.20.") || l.contains("expect-fail")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
