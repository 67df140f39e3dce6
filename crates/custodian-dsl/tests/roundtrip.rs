//! The fuzz property on generated input, so CI checks it without a nightly toolchain: parsing
//! never panics, and the canonical print reparses cleanly to the same statements.

use custodian_dsl::ast::StatementKind;
use custodian_dsl::{parse, print, SourceFile};

/// Words chosen to hit every rule: keywords in any case, quotes, dots, commas, continuations.
const WORDS: &[&str] = &[
    "a",
    "HOSTS",
    "must",
    "MUST",
    "not",
    "run",
    "ping",
    "ssh",
    "is",
    "are",
    "and",
    "AND",
    "fetched",
    "from",
    "location",
    "Locations",
    "3",
    "lon1,",
    "otherwise",
    "with",
    "subject",
    "between",
    "except",
    "9-17",
    "22-3",
    "24-1",
    "'x y'",
    "\"it's\"",
    "'",
    "\"",
    "''",
    ".",
    "..",
    "a.",
    "x,y",
    ",",
    "#",
    "\\",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "on",
    "port",
    "80",
    "http://u:p@h/",
    "don't",
    "é",
    "'a'b",
    "b'c",
];

fn shapes(file: &SourceFile) -> Vec<StatementKind> {
    file.statements
        .iter()
        .map(|s| s.kind.without_spans())
        .collect()
}

/// A small linear congruential generator: deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn generated(rng: &mut Lcg) -> String {
    const STARTS: &[&str] = &[
        "a must run ssh ",
        "B2 are ",
        "x Must Not Run t ",
        "h must ping ",
        "",
    ];
    let mut src = String::new();
    src.push_str(STARTS[rng.next(STARTS.len())]);
    for _ in 0..rng.next(30) {
        src.push_str(WORDS[rng.next(WORDS.len())]);
        src.push_str(["", " ", " ", "  "][rng.next(4)]);
    }
    src
}

#[test]
fn print_of_parse_reparses_to_the_same_statements() {
    let mut rng = Lcg(7);
    let mut parsed = 0;
    for _ in 0..10_000 {
        let src = generated(&mut rng);
        let (file, _) = parse("gen", &src);
        parsed += file.statements.len();
        let printed = print(&file);
        let (again, diags) = parse("printed", &printed);
        assert!(
            diags.is_empty(),
            "{src:?} printed as {printed:?}: {diags:?}"
        );
        assert_eq!(
            shapes(&file),
            shapes(&again),
            "{src:?} printed as {printed:?}"
        );
        assert_eq!(print(&again), printed);
    }
    assert!(parsed > 1000, "generator too weak: {parsed} statements");
}
