//! The custodian test language: text to a syntax tree with spans, macro expansion and
//! diagnostics. Pure: no I/O (fetched macros go through a caller-supplied function) and no
//! knowledge of probe types.

pub mod ast;
pub mod blocks;
pub mod diagnostic;
mod expand;
mod lexer;
mod parser;
mod print;

pub use ast::{SourceFile, Span, Spanned, Window};
pub use diagnostic::{Diagnostic, Severity};
pub use expand::{expand, expand_at_most, expand_each, Expanded, Fetch, Location};
pub use parser::parse;
pub use print::print;
