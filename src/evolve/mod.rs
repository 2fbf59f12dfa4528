//! Evolves prompts: the genome, variation operators, selection, the shared search state and
//! the strategies.

pub mod choice;
pub mod error;
pub mod genome;
pub mod operators;
pub mod pool;
pub mod results;
pub mod search;
pub mod selection;
pub mod strategies;
pub mod train;

pub use crate::chat::{ChatMessage, TextGenerator};
pub use error::EvolveError;
pub use genome::Genome;
pub use operators::{
    operator_by_name, Family, Operator, OperatorContext, WeightedOperator, OPERATORS,
};
pub use pool::PhrasePool;
pub use results::{ExampleResult, Pool, Results};
pub use search::{Candidate, Evaluator, Scored, Search, SearchLimits, SearchOutcome, StopReason};
pub use selection::{elite_indices, tournament};
pub use strategies::{run_search, SearchConfig, STRATEGY_NAMES};
pub use train::{TrainExample, TrainPool};
