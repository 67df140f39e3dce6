//! Parse and expand 100,000 generated lines (a mix of macro definitions, macro uses and plain
//! tests with options and clauses).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custodian_dsl::{expand, parse};

const LINES: usize = 100_000;

fn source() -> String {
    let mut src = String::with_capacity(LINES * 64);
    for i in 0..LINES {
        let line = match i % 10 {
            0 => format!(
                "GROUP_{i} are web{i}.example and db{i}.example, 192.0.2.{}\n",
                i % 250
            ),
            1 => format!(
                "GROUP_{} must run http with status 200 otherwise 'group {i} down'.\n",
                i - 1
            ),
            2 => format!("# comment {i}\n"),
            3 => format!(
                "host{i}.example must run tcp on {} with banner 'SSH' between 9-17.\n",
                1 + i % 60000
            ),
            4 => format!("host{i}.example must not run openproxy except between 22-3.\n"),
            _ => format!(
                "host{i}.example must run ssh with subject 'h{i}' otherwise 'ssh on host{i}'.\n"
            ),
        };
        src.push_str(&line);
    }
    src
}

fn bench(c: &mut Criterion) {
    let src = source();
    let mut group = c.benchmark_group("dsl");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(10);
    group.bench_function("parse+expand 100k lines", |b| {
        b.iter(|| {
            let (file, diags) = parse("bench.cfg", &src);
            assert!(diags.is_empty());
            let files = [file];
            let (tests, diags) = expand(&files, &mut |_| Err("offline".into()));
            assert!(diags.is_empty());
            tests.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
