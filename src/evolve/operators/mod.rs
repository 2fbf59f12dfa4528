//! Variation operators: the trait, the weighted operator list and lookup by name.

mod crossover;
mod edit;

pub use crossover::OnePointCrossover;
pub use edit::{Delete, Insert, Swap};

use rand_chacha::ChaCha8Rng;

use super::genome::Genome;
use super::pool::PhrasePool;

/// A way to make a new genome from one or more parents.
pub trait Operator: Send + Sync {
    /// Stable name recorded in candidate lineage: "delete", "swap", "insert", "crossover".
    fn name(&self) -> &'static str;
    /// Number of parents: 1 for edits, 2 for crossover.
    fn arity(&self) -> usize;
    /// Returns None when the operator cannot apply (e.g. delete on a 1-phrase genome) or produces an unchanged genome.
    fn apply(&self, parents: &[&Genome], pool: &PhrasePool, rng: &mut ChaCha8Rng)
        -> Option<Genome>;
}

/// An operator with its selection weight.
pub struct WeightedOperator {
    /// The operator.
    pub operator: Box<dyn Operator>,
    /// Relative selection weight among operators of the same arity (finite, >= 0; 0 disables it).
    pub weight: f64,
}

impl WeightedOperator {
    /// Pairs an operator with a weight.
    pub fn new(operator: Box<dyn Operator>, weight: f64) -> WeightedOperator {
        WeightedOperator { operator, weight }
    }
}

impl std::fmt::Debug for WeightedOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightedOperator")
            .field("operator", &self.operator.name())
            .field("weight", &self.weight)
            .finish()
    }
}

/// Names accepted by [`operator_by_name`], in the order of [`default_operators`].
pub const OPERATOR_NAMES: [&str; 4] = ["delete", "swap", "insert", "crossover"];

/// delete 1, swap 1, insert 1, crossover 1.
pub fn default_operators() -> Vec<WeightedOperator> {
    OPERATOR_NAMES
        .iter()
        .filter_map(|name| operator_by_name(name))
        .map(|operator| WeightedOperator::new(operator, 1.0))
        .collect()
}

/// The operator with this name, or None for an unknown name (see [`OPERATOR_NAMES`]).
pub fn operator_by_name(name: &str) -> Option<Box<dyn Operator>> {
    match name {
        "delete" => Some(Box::new(Delete)),
        "swap" => Some(Box::new(Swap)),
        "insert" => Some(Box::new(Insert)),
        "crossover" => Some(Box::new(OnePointCrossover)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lookup_agree() {
        let ops = default_operators();
        let names: Vec<&str> = ops.iter().map(|w| w.operator.name()).collect();
        assert_eq!(names, OPERATOR_NAMES);
        assert!(ops.iter().all(|w| w.weight == 1.0));
        let arities: Vec<usize> = ops.iter().map(|w| w.operator.arity()).collect();
        assert_eq!(arities, [1, 1, 1, 2]);
        assert!(operator_by_name("mutate").is_none());
    }
}
