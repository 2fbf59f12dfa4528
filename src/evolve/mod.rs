//! Evolves prompts: the genome, variation operators, selection, the shared search state and
//! the strategies.

pub mod admission;
pub mod budget;
pub mod candidate;
pub mod choice;
pub mod driver;
pub mod error;
pub mod genome;
pub mod operators;
pub mod outcome;
pub mod pool;
pub mod results;
pub mod search;
pub mod selection;
pub mod strategies;
pub mod train;

pub use crate::chat::{ChatMessage, TextGenerator};
pub use budget::StopReason;
pub use candidate::{Candidate, Scored};
pub use driver::run_search;
pub use error::EvolveError;
pub use genome::Genome;
pub use operators::{
    operator_by_name, Family, Operator, OperatorContext, WeightedOperator, OPERATORS,
};
pub use outcome::SearchOutcome;
pub use pool::PhrasePool;
pub use results::{ExampleResult, Pool, Results};
pub use search::{Evaluator, Search, SearchLimits};
pub use selection::{elite_indices, tournament};
pub use strategies::{SearchConfig, STRATEGY_NAMES};
pub use train::{TrainExample, TrainPool};
