//! Why a search stops, and the budget every strategy is charged the same way: example
//! evaluations (dev and train examples; validation is counted apart) and seconds.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Why a search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// All configured generations ran.
    Generations,
    /// The next evaluation would have exceeded `max_evals`.
    MaxEvals,
    /// `max_seconds` passed.
    MaxSeconds,
    /// `patience` generations without a better best.
    Patience,
    /// No operator could make a new prompt.
    Exhausted,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Generations => "generations done",
            StopReason::MaxEvals => "evaluation budget spent",
            StopReason::MaxSeconds => "time budget spent",
            StopReason::Patience => "no improvement within patience",
            StopReason::Exhausted => "no new prompt could be made",
        })
    }
}

/// What a search may spend, and what it has spent.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    max_evals: Option<u64>,
    max_seconds: Option<f64>,
    started: Instant,
    /// Example evaluations charged so far (dev and train).
    pub(crate) evals_used: u64,
    /// Example evaluations spent on validation (not charged).
    pub(crate) validation_evals: u64,
}

impl Budget {
    /// A budget of at most `max_evals` example evaluations and `max_seconds` from now.
    pub(crate) fn new(max_evals: Option<u64>, max_seconds: Option<f64>) -> Self {
        Self {
            max_evals,
            max_seconds,
            started: Instant::now(),
            evals_used: 0,
            validation_evals: 0,
        }
    }

    /// Whether `cost` more charged evaluations stay within the budget.
    pub(crate) fn fits(&self, cost: u64) -> bool {
        self.max_evals
            .is_none_or(|max| self.evals_used + cost <= max)
    }

    /// Whether the time budget is spent.
    pub(crate) fn out_of_time(&self) -> bool {
        self.max_seconds
            .is_some_and(|max| self.started.elapsed().as_secs_f64() >= max)
    }
}
