//! custodian's pure domain: the [`Job`] wire type, probe outcomes, static probe descriptions and
//! the planner that turns parsed test files into jobs. No I/O, no async runtime.

pub mod outcome;
pub mod param;
pub mod plan;

pub mod probe;
pub mod queue;
pub mod secret;
pub mod spec;
pub mod state;

pub use custodian_dsl as dsl;
pub use outcome::{judge, Finding, JobResult, Outcome, Status, Verdict};
pub use param::{Invalid, Kind, Params, Value};
pub use probe::{ParamSpec, ProbeSpec, ScanSpec, TargetKind};
pub use spec::{mask_url, valid_location_name, Family, Job, Locations, WIRE_VERSION};
