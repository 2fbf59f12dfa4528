//! Search strategies, selected by `--strategy`: `fewshot-gepa` (the default: fewshot's search
//! and gepa's reflective rewrites of the instruction, half the budget each, in the order a
//! one-generation probe measures on the task), `fewshot` (a GA
//! over the demonstrations and the instruction, with error-driven demonstrations), `ga`
//! (genetic algorithm), `de` (EvoPrompt's differential evolution), `hillclimb` (GrIPS-like
//! greedy edits with patience), `promptbreeder` (co-evolving prompts and mutation-prompts),
//! `gepa` (Pareto front, reflective mutation, merge), `opro` (the model optimises from the
//! score trajectory), `adaptive` (demonstration moves, reflection, edits and crossovers, the
//! children shared between them by a bandit on what wins on this task), `staged` (gepa's
//! instruction search for half the budget, then fewshot's demonstration search) and `random`
//! (the same operators without selection: the baseline every benchmark compares against).

mod adaptive;
mod config;
mod de;
mod error_driven;
mod ga;
mod gepa;
mod hillclimb;
mod opro;
mod promptbreeder;
mod random;
mod registry;
pub(crate) mod staged;
mod strategy;
mod validate;

pub use adaptive::{MoveFamily, FLOOR as FAMILY_FLOOR};
pub use config::{Replacement, SearchConfig, SelectionKind, DEFAULT_FINALISTS, DEFAULT_SCREEN};
#[cfg(test)]
pub(crate) use registry::STRATEGY_MOVES;
pub(crate) use registry::{strategy_by_name, strategy_model_use, ModelUse};
pub use registry::{strategy_summary, STRATEGY_NAMES};
pub(crate) use strategy::{Setup, Strategy};
pub use validate::check_operators;
pub(crate) use validate::operator_set;

#[cfg(test)]
pub(crate) mod testing;
