//! Evolves prompts: genome, variation operators, selection and the genetic algorithm.

pub mod error;
pub mod generator;
pub mod genome;
pub mod operators;
pub mod pool;
pub mod selection;
pub mod strategy;

pub use error::EvolveError;
pub use generator::{ChatMessage, TextGenerator};
pub use genome::Genome;
pub use operators::{default_operators, operator_by_name, Operator, WeightedOperator};
pub use pool::PhrasePool;
pub use selection::{elite_indices, tournament};
pub use strategy::{Candidate, Evaluator, GaConfig, GaOutcome, GeneticAlgorithm, Scored};
