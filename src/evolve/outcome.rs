//! What a search produced: the answer, the best on dev, the initial prompts, the last
//! population and the counts reports show.

use super::budget::StopReason;
use super::candidate::Scored;
use super::choice::FinalChoice;

/// What a search produced.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    /// The answer: the finalist chosen on validation (or, without validation, the best fully
    /// scored candidate on dev; ties: earliest id).
    pub best: Scored,
    /// The best fully scored candidate on dev.
    pub dev_best: Scored,
    /// The user's initial prompts (after dropping duplicates), scored, in the order given.
    pub initial: Vec<Scored>,
    /// The last population, best first.
    pub final_population: Vec<Scored>,
    /// Candidates scored (at least partly), initial prompts included.
    pub candidates_proposed: usize,
    /// Example forward passes charged to the budget.
    pub evals_used: u64,
    /// Generations completed after the initial one.
    pub generations: usize,
    /// Why it ended.
    pub stop: StopReason,
    /// Replies the model gave to operators.
    pub model_replies: u64,
    /// Model replies rejected by cleaning.
    pub rejected_replies: u64,
    /// Children that paired screening stopped (worse than their parent on the minibatch).
    pub screened_out: u64,
    /// Example evaluations spent on the validation split (not charged to the budget).
    pub validation_evals: u64,
    /// How the answer was chosen: None when it is simply the best on dev (no validation split).
    pub final_choice: Option<FinalChoice>,
}
