//! Error-driven demonstrations: score the parent on a few train-pool examples (charged to the
//! budget, cached per candidate), and make one the parent gets wrong a demonstration of the
//! child: added while the child has fewer than [`demo_cap`] demonstrations, else in place of
//! one (of the same label when there is one). Demonstrations only ever come from the train
//! pool, never from dev, validation or test.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::evolve::candidate::Candidate;
use crate::evolve::error::EvolveError;
use crate::evolve::search::Search;
use crate::evolve::train::TrainPool;

/// The operator name logged for error-driven children.
pub(crate) const DEMO_ERROR: &str = "demo-error";

/// Train-pool examples a parent is probed on per error-driven move.
pub(crate) const PROBE: usize = 8;

/// Most demonstrations an error-driven move adds up to: one per label, at most 4 (more
/// demonstrations cost this model accuracy on SST-2; the search can still add more with
/// `demo-add`).
pub(crate) fn demo_cap(train: &TrainPool) -> usize {
    let mut labels: Vec<&str> = train.examples().iter().map(|e| e.target.as_str()).collect();
    labels.sort();
    labels.dedup();
    labels.len().clamp(1, 4)
}

/// A child of `parent` with one of the train examples it fails on as a demonstration; None
/// when the pool is empty, the budget is spent, the parent fails on none of the probed
/// examples, or the child's prompt is not new.
pub(crate) fn error_driven_child(
    search: &mut Search<'_, '_>,
    parent: &Candidate,
    generation: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Option<Candidate>, EvolveError> {
    let Some(results) = search.probe_train(parent, PROBE, rng)? else {
        return Ok(None);
    };
    let train = search.ops.train;
    let failures: Vec<usize> = results
        .iter()
        .filter(|r| r.metric < 1.0)
        .map(|r| r.example)
        .filter(|&i| i < train.len() && !parent.genome.demos.contains(&i))
        .collect();
    if failures.is_empty() {
        return Ok(None);
    }
    let demo = failures[rng.gen_range(0..failures.len())];
    let mut genome = parent.genome.clone();
    if genome.demos.len() < demo_cap(train) {
        genome.demos.push(demo);
    } else {
        let label = train.label(demo);
        let same: Vec<usize> = (0..genome.demos.len())
            .filter(|&j| train.label(genome.demos[j]) == label)
            .collect();
        let j = if same.is_empty() {
            rng.gen_range(0..genome.demos.len())
        } else {
            same[rng.gen_range(0..same.len())]
        };
        genome.demos[j] = demo;
    }
    Ok(search.propose(genome, vec![parent.id], DEMO_ERROR, generation))
}
