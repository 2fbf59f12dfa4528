//! Per-example results, the currency of the search: what one evaluation returns for each example
//! (its fitness, its metric and what the model answered), and what a candidate has accumulated
//! on one pool of examples. Means are derived from these, never stored instead of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The pools of examples a search may score a candidate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The search's fitness split.
    Dev,
    /// Held out from the search; scored once at the end to choose the answer.
    Validation,
    /// The train examples offered as demonstrations (error-driven moves and reflection probe
    /// them; charged to the budget like dev).
    Train,
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pool::Dev => "dev",
            Pool::Validation => "validation",
            Pool::Train => "train",
        })
    }
}

/// One example's result for one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    /// Index of the example in its pool.
    pub example: usize,
    /// The search's fitness on this example (accuracy, gold-label margin or probability; the
    /// task's metric for generation tasks); higher is better.
    pub fitness: f64,
    /// The task's metric on this example: 1/0 correctness (classification) or the generation
    /// metric; the headline accuracy is its mean.
    pub metric: f64,
    /// What the model answered: the predicted label, or the generated text.
    pub predicted: String,
}

/// A candidate's results on one pool, by example index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results {
    by_example: BTreeMap<usize, ExampleResult>,
}

impl Results {
    /// Adds (or replaces) results.
    pub fn extend(&mut self, results: impl IntoIterator<Item = ExampleResult>) {
        for r in results {
            self.by_example.insert(r.example, r);
        }
    }

    /// Examples scored.
    pub fn len(&self) -> usize {
        self.by_example.len()
    }

    /// True when nothing is scored.
    pub fn is_empty(&self) -> bool {
        self.by_example.is_empty()
    }

    /// Whether this example is scored.
    pub fn contains(&self, example: usize) -> bool {
        self.by_example.contains_key(&example)
    }

    /// The result on one example.
    pub fn get(&self, example: usize) -> Option<&ExampleResult> {
        self.by_example.get(&example)
    }

    /// Every result, by example index.
    pub fn iter(&self) -> impl Iterator<Item = &ExampleResult> {
        self.by_example.values()
    }

    /// Mean fitness over the scored examples (NaN when none).
    pub fn mean_fitness(&self) -> f64 {
        mean(self.iter().map(|r| r.fitness))
    }

    /// Mean metric (accuracy) over the scored examples (NaN when none).
    pub(crate) fn mean_metric(&self) -> f64 {
        mean(self.iter().map(|r| r.metric))
    }

    /// Mean fitness over these examples, when every one of them is scored.
    pub(crate) fn mean_fitness_on(&self, examples: &[usize]) -> Option<f64> {
        let values: Option<Vec<f64>> = examples
            .iter()
            .map(|i| self.get(*i).map(|r| r.fitness))
            .collect();
        values.map(|v| mean(v.into_iter()))
    }

    /// Paired gain over `parent`: the mean of (this fitness - the parent's) over the examples
    /// both were scored on (None when they share none). Paired screening compares a child with
    /// its parent this way, and the adaptive strategy credits a move family with it.
    pub(crate) fn paired_gain(&self, parent: &Results) -> Option<f64> {
        let diffs: Vec<f64> = self
            .iter()
            .filter_map(|r| parent.get(r.example).map(|p| r.fitness - p.fitness))
            .collect();
        (!diffs.is_empty()).then(|| crate::stats::mean(&diffs))
    }
}

/// Mean of the values; NaN for none.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    crate::stats::mean(&values.collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(example: usize, fitness: f64) -> ExampleResult {
        ExampleResult {
            example,
            fitness,
            metric: f64::from(fitness > 0.5),
            predicted: String::new(),
        }
    }

    #[test]
    fn means_are_over_the_examples_scored_and_subsets_need_every_example() {
        let mut res = Results::default();
        assert!(res.mean_fitness().is_nan());
        res.extend([r(0, 0.9), r(2, 0.1)]);
        res.extend([r(2, 0.3)]);
        assert_eq!(res.len(), 2);
        assert!((res.mean_fitness() - 0.6).abs() < 1e-12);
        assert_eq!(res.mean_metric(), 0.5);
        assert_eq!(res.mean_fitness_on(&[2]), Some(0.3));
        assert_eq!(res.mean_fitness_on(&[1, 2]), None);
    }

    #[test]
    fn paired_gain_is_over_the_examples_both_were_scored_on() {
        let mut child = Results::default();
        child.extend([r(0, 1.0), r(1, 0.0), r(5, 1.0)]);
        let mut parent = Results::default();
        parent.extend([r(0, 0.0), r(1, 0.0), r(2, 1.0), r(3, 1.0)]);
        // Examples 0 and 1 only: (+1 + 0) / 2.
        assert_eq!(child.paired_gain(&parent), Some(0.5));
        assert_eq!(parent.paired_gain(&child), Some(-0.5));
        assert_eq!(child.paired_gain(&Results::default()), None);
    }
}
