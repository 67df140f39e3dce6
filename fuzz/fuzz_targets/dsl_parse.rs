//! Fuzz target: parsing any text never panics, and the canonical print of what parsed reparses
//! cleanly to the same statements and prints identically.
#![no_main]

use custodian_dsl::ast::StatementKind;
use custodian_dsl::{parse, print, SourceFile};
use libfuzzer_sys::fuzz_target;

fn shapes(file: &SourceFile) -> Vec<StatementKind> {
    file.statements.iter().map(|s| s.kind.without_spans()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, diags) = parse("fuzz", text);
    for d in &diags {
        let _ = d.render();
    }
    let printed = print(&file);
    let (again, diags) = parse("printed", &printed);
    assert!(diags.is_empty(), "printed form has errors: {printed:?} {diags:?}");
    assert_eq!(shapes(&file), shapes(&again), "{printed:?}");
    assert_eq!(print(&again), printed);
});
