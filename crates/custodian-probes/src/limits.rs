//! The worker's slots as a check sees them, so a check that fans out to other hosts (`mx`
//! greets every exchange) stays inside the global and per-host limits it was run under.

use std::fmt;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots for the connections a check opens beyond its own target; the worker installs its own
/// with [`Ctx::with_limits`](crate::Ctx::with_limits). Without one (tests, tools) nothing
/// limits a check but its own caps.
pub trait Limits: Send + Sync + fmt::Debug {
    /// One more global slot if one is free now. Never waited for: the check already holds a
    /// slot, and checks that all fan out while holding one would otherwise wait on each other
    /// until their deadlines.
    fn try_global(&self) -> Option<OwnedSemaphorePermit>;

    /// `host`'s own slots when hosts have a limit (`per_host`), keyed as the worker keys a
    /// job's target; `None` when there is no per-host limit.
    fn host(&self, host: &str) -> Option<Arc<Semaphore>>;
}
