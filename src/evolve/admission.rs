//! Which candidates get the rest of dev: paired screening (a child first scored on a minibatch
//! its best parent was scored on, and kept only when not worse there) and racing (successive
//! halving on a quarter, then half of dev, stopping those whose optimistic bound cannot reach
//! the top). The [`super::search::Search`] applies these policies to every strategy's children.

use rand_chacha::ChaCha8Rng;

use super::results::Results;

/// The parent a child is compared with (paired screening, move-family credit): of the
/// `parents` scored on at least `full` dev examples, the one with the best mean fitness (the
/// last of equals).
pub(crate) fn comparison_parent<'r>(
    parents: impl IntoIterator<Item = (u64, &'r Results)>,
    full: usize,
) -> Option<(u64, &'r Results)> {
    parents
        .into_iter()
        .filter(|(_, r)| r.len() >= full)
        .max_by(|a, b| a.1.mean_fitness().total_cmp(&b.1.mean_fitness()))
}

/// Floor on the per-example standard deviation racing uses for its optimistic bound (that of
/// a 0/1 score at 5% or 95%), so a candidate with identical results on a few examples is not
/// taken as certain.
const MIN_RACING_SD: f64 = 0.2179;

/// Paired screening: a child is first scored on `size` dev examples drawn at random, and goes
/// on to the rest of dev only when its mean fitness there is not below its best parent's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Screening {
    /// Minibatch size (0: off).
    pub(crate) size: usize,
}

impl Screening {
    /// Whether screening applies to a dev set of `full` examples (on, and smaller than it).
    pub(crate) fn applies(&self, full: usize) -> bool {
        self.size > 0 && self.size < full
    }

    /// The minibatch: `size` of the `full` dev examples, drawn from the search's stream.
    pub(crate) fn minibatch(&self, full: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        rand::seq::index::sample(rng, full, self.size).into_vec()
    }

    /// Whether the child is not worse than its parent on the minibatch.
    pub(crate) fn passes(child: &Results, parent: &Results, batch: &[usize]) -> bool {
        // Never NaN: the search refuses NaN results, and the minibatch is never empty.
        child.mean_fitness_on(batch) >= parent.mean_fitness_on(batch)
    }
}

/// Racing (successive halving): a candidate is scored on a quarter, then half of dev, and
/// stopped when an optimistic bound on its full-dev score cannot reach the `top`-th best full
/// score so far.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Racing {
    /// Whether racing is on.
    pub(crate) on: bool,
    /// The rank a candidate must be able to reach.
    pub(crate) top: usize,
}

impl Racing {
    /// The score to reach: the `top`-th best of these full-dev scores (None: too few yet).
    pub(crate) fn threshold(&self, full_scores: impl Iterator<Item = f64>) -> Option<f64> {
        let mut fulls: Vec<f64> = full_scores.collect();
        fulls.sort_by(|a, b| b.total_cmp(a));
        fulls.get(self.top.max(1) - 1).copied()
    }

    /// The rungs (example counts) before the full dev set of `full` examples: none when racing
    /// is off or there is no threshold yet.
    pub(crate) fn rungs(&self, full: usize, threshold: Option<f64>) -> Vec<usize> {
        if !self.on || threshold.is_none() {
            return Vec::new();
        }
        let mut r: Vec<usize> = [full / 4, full / 2]
            .into_iter()
            .filter(|&n| n > 0 && n < full)
            .collect();
        r.dedup();
        r
    }

    /// Whether a candidate with these results goes on: its mean plus a standard error (the
    /// per-example standard deviation, at least [`MIN_RACING_SD`]) reaches the threshold.
    pub(crate) fn keeps(results: &Results, threshold: Option<f64>) -> bool {
        let fitness: Vec<f64> = results.iter().map(|x| x.fitness).collect();
        let sd = crate::stats::std_dev(&fitness);
        let upper = results.mean_fitness() + sd.max(MIN_RACING_SD) / (results.len() as f64).sqrt();
        upper >= threshold.unwrap_or(f64::NEG_INFINITY)
    }
}
