//! The operators a search draws from: weighted operators grouped by arity.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::operator::{Operator, WeightedOperator};
use crate::evolve::error::EvolveError;

/// Weighted operators grouped by arity, ready to draw from.
pub(crate) struct OperatorSet {
    by_arity: Vec<(usize, Vec<WeightedOperator>)>,
}

impl OperatorSet {
    /// Groups the operators with positive weight; errors when none is left.
    pub fn new(operators: Vec<WeightedOperator>) -> Result<Self, EvolveError> {
        let mut by_arity: Vec<(usize, Vec<WeightedOperator>)> = Vec::new();
        for w in operators {
            if !(w.weight.is_finite() && w.weight >= 0.0) {
                return Err(EvolveError::Operators(format!(
                    "operator `{}` has weight {}; weights must be finite numbers >= 0 (0 disables it)",
                    w.operator.name(),
                    w.weight
                )));
            }
            if w.weight == 0.0 {
                continue;
            }
            let a = w.operator.arity();
            match by_arity.iter_mut().find(|(x, _)| *x == a) {
                Some((_, v)) => v.push(w),
                None => by_arity.push((a, vec![w])),
            }
        }
        by_arity.sort_by_key(|(a, _)| *a);
        for (_, set) in &by_arity {
            if !set.iter().map(|w| w.weight).sum::<f64>().is_finite() {
                return Err(EvolveError::Operators(
                    "operator weights are too large to add up; use weights like 1 or 2".to_string(),
                ));
            }
        }
        if by_arity.is_empty() {
            return Err(EvolveError::Operators(
                "no operator has a positive weight; enable at least one (e.g. --operators swap=1)"
                    .to_string(),
            ));
        }
        Ok(Self { by_arity })
    }

    /// No operators (for a strategy that makes its children itself).
    pub fn empty() -> Self {
        Self {
            by_arity: Vec::new(),
        }
    }

    /// Whether some operator takes this many parents.
    pub(crate) fn has_arity(&self, arity: usize) -> bool {
        self.by_arity.iter().any(|(a, _)| *a == arity)
    }

    /// Names of the enabled operators.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_arity
            .iter()
            .flat_map(|(_, v)| v.iter().map(|w| w.operator.name()))
            .collect()
    }

    /// An operator of this arity drawn by weight (None when there is none).
    pub(crate) fn choose_arity(&self, arity: usize, rng: &mut ChaCha8Rng) -> Option<&dyn Operator> {
        let set = &self.by_arity.iter().find(|(a, _)| *a == arity)?.1;
        Some(weighted_choice(set, rng))
    }

    /// An operator drawn by weight among those `keep` accepts, whatever their arity (None when
    /// it accepts none).
    pub(crate) fn choose_where(
        &self,
        keep: impl Fn(&dyn Operator) -> bool,
        rng: &mut ChaCha8Rng,
    ) -> Option<&dyn Operator> {
        let set: Vec<&WeightedOperator> = self
            .by_arity
            .iter()
            .flat_map(|(_, v)| v)
            .filter(|w| keep(w.operator.as_ref()))
            .collect();
        (!set.is_empty()).then(|| weighted_pick(&set, rng))
    }

    /// Whether `keep` accepts some enabled operator.
    pub fn any(&self, keep: impl Fn(&dyn Operator) -> bool) -> bool {
        self.by_arity
            .iter()
            .flat_map(|(_, v)| v)
            .any(|w| keep(w.operator.as_ref()))
    }

    /// A one-parent operator, or a two-parent one when `crossover` is asked for; falls back to
    /// whichever kind exists.
    pub(crate) fn choose(&self, crossover: bool, rng: &mut ChaCha8Rng) -> &dyn Operator {
        let want = if crossover { 2 } else { 1 };
        if self.has_arity(want) {
            return self.choose_arity(want, rng).expect("arity exists");
        }
        let other = if crossover { 1 } else { 2 };
        if self.has_arity(other) {
            return self.choose_arity(other, rng).expect("arity exists");
        }
        weighted_choice(&self.by_arity[0].1, rng)
    }
}

/// Picks from a non-empty set with probability proportional to weight.
fn weighted_choice<'a>(set: &'a [WeightedOperator], rng: &mut ChaCha8Rng) -> &'a dyn Operator {
    weighted_pick(&set.iter().collect::<Vec<_>>(), rng)
}

/// Picks from a non-empty set with probability proportional to weight.
fn weighted_pick<'a>(set: &[&'a WeightedOperator], rng: &mut ChaCha8Rng) -> &'a dyn Operator {
    let total: f64 = set.iter().map(|w| w.weight).sum();
    let mut r = rng.gen_range(0.0..total);
    for w in set {
        if r < w.weight {
            return w.operator.as_ref();
        }
        r -= w.weight;
    }
    // Floating-point leftovers land on the last one.
    set[set.len() - 1].operator.as_ref()
}
