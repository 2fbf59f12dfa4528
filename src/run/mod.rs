//! Runs: the backends a command opens, and run folders: the resolved config, the append-only
//! evaluation log, the per-generation checkpoint, and the final report.

pub mod analysis;
pub mod backends;
pub mod checkpoint;
pub mod cost;
pub mod evaluator;
pub mod folder;
pub mod length;
pub mod log;
pub mod plots;
pub mod report;
pub mod session;

pub use backends::{Backends, ModelSettings};
pub use folder::RunFolder;
pub use log::{EvaluationLog, EvaluationRecord};
pub use report::{PromptResult, Report};
pub use session::{execute, RunSettings};
