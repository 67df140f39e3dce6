//! The commands that have no module of their own, one per file, and the start-up they share.

pub(crate) mod check;
pub(crate) mod examples;
pub(crate) mod run;
pub(crate) mod startup;
