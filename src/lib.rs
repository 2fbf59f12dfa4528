//! promptevo: evolve better prompts, scored by a local transformer running through candle.
//!
//! Data flows one way: a [`task::Task`] (data, template, labels) and a [`model::Model`] feed the
//! [`score::Scorer`], which a strategy from [`evolve`] queries through an evaluator that logs
//! every candidate to a [`run`] folder.
#![warn(missing_docs)]

pub mod bench;
pub mod chat;
pub mod error;
pub mod evolve;
pub mod limits;
pub mod model;
pub mod progress;
pub mod remote;
pub mod run;
pub mod score;
pub mod stats;
pub mod task;

pub use error::{Error, Result};
