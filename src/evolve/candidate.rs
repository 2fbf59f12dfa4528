//! What a strategy proposes and the search scores: a candidate prompt with its lineage, and a
//! candidate with its fitness.

use serde::{Deserialize, Serialize};

use super::genome::Genome;

/// Operator name recorded on the user's own prompts.
pub(crate) const INITIAL_OPERATOR: &str = "initial";

/// A candidate prompt proposed by a strategy, with its lineage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Sequential id in proposal order, starting at 0 for the first initial prompt.
    pub id: u64,
    /// Ids of the parents (empty for initial prompts).
    pub parents: Vec<u64>,
    /// Name of the operator that made it, or "initial".
    pub operator: String,
    /// The prompt as genes.
    pub genome: Genome,
    /// Generation in which it was proposed (0 = initial population).
    pub generation: usize,
    /// The prompt text: the genome rendered, its demonstrations from the train pool, when it
    /// was proposed.
    pub(crate) prompt: String,
}

impl Candidate {
    /// The prompt text sent to the model.
    pub fn prompt(&self) -> String {
        self.prompt.clone()
    }
}

/// A candidate with its fitness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The candidate.
    pub candidate: Candidate,
    /// Its fitness: the mean per-example fitness over the dev examples scored; higher is better.
    pub score: f64,
    /// Its mean metric (accuracy) over the same examples.
    #[serde(default)]
    pub accuracy: f64,
    /// Dev examples scored.
    #[serde(default)]
    pub n: usize,
    /// Whether the score is on the full dev set (false: stopped early by screening, racing or
    /// the budget).
    pub full: bool,
}

/// Sorts best first; stable, so ties keep their current order.
pub(crate) fn sort_best_first(population: &mut [Scored]) {
    population.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}
