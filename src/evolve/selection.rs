//! Parent selection (tournament) and survivor selection (elitism).

use std::cmp::Ordering;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Fitness used for ranking: NaN ranks below everything.
fn rank_value(f: f64) -> f64 {
    if f.is_nan() {
        f64::NEG_INFINITY
    } else {
        f
    }
}

/// Best of `k` members drawn uniformly with replacement (k = 0 is treated as 1);
/// ties go to the earlier index.
///
/// # Panics
/// If `population` is empty (a caller bug: the GA never selects from an empty population).
pub fn tournament<'a, T>(
    population: &'a [T],
    fitness: impl Fn(&T) -> f64,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> &'a T {
    assert!(
        !population.is_empty(),
        "tournament selection needs a non-empty population"
    );
    let mut best = rng.gen_range(0..population.len());
    let mut best_fit = rank_value(fitness(&population[best]));
    for _ in 1..k.max(1) {
        let i = rng.gen_range(0..population.len());
        let f = rank_value(fitness(&population[i]));
        if f > best_fit || (f == best_fit && i < best) {
            best = i;
            best_fit = f;
        }
    }
    &population[best]
}

/// Indices of the `n` best (highest) fitness values, best first, stable on ties
/// (earlier first); NaN ranks last. Returns all indices when `n` exceeds the length.
pub fn elite_indices(fitness: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..fitness.len()).collect();
    order.sort_by(|&a, &b| {
        rank_value(fitness[b])
            .partial_cmp(&rank_value(fitness[a]))
            .unwrap_or(Ordering::Equal)
    });
    order.truncate(n);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn elite_indices_are_best_first_and_stable() {
        let fitness = [0.5, 0.9, 0.1, 0.9, f64::NAN, 0.5];
        assert_eq!(elite_indices(&fitness, 3), [1, 3, 0]);
        assert_eq!(elite_indices(&fitness, 0), Vec::<usize>::new());
        assert_eq!(elite_indices(&fitness, 10), [1, 3, 0, 5, 2, 4]);
        assert!(elite_indices(&[], 2).is_empty());
    }

    #[test]
    fn tournament_of_whole_population_size_favours_the_best() {
        let pop = [1.0, 5.0, 3.0, 5.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // With a large k every member is drawn, so the winner is the best, earliest on ties.
        for _ in 0..20 {
            let winner = tournament(&pop, |&f| f, 64, &mut rng);
            assert!(std::ptr::eq(winner, &pop[1]));
        }
    }

    #[test]
    fn tournament_k1_is_uniform_and_k2_prefers_fitter() {
        let pop: Vec<f64> = (0..4).map(f64::from).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut wins_k1 = [0usize; 4];
        let mut wins_k2 = [0usize; 4];
        for _ in 0..4000 {
            wins_k1[*tournament(&pop, |&f| f, 1, &mut rng) as usize] += 1;
            wins_k2[*tournament(&pop, |&f| f, 2, &mut rng) as usize] += 1;
        }
        assert!(
            wins_k1.iter().all(|&w| (800..1200).contains(&w)),
            "{wins_k1:?}"
        );
        // Expected shares for k = 2: 1/16, 3/16, 5/16, 7/16.
        assert!(
            wins_k2[0] < wins_k2[1] && wins_k2[1] < wins_k2[2] && wins_k2[2] < wins_k2[3],
            "{wins_k2:?}"
        );
        // k = 0 behaves like k = 1 and never panics.
        let _ = tournament(&pop, |&f| f, 0, &mut rng);
    }

    #[test]
    fn tournament_is_deterministic_for_a_seed() {
        let pop = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let picks = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..10)
                .map(|_| *tournament(&pop, |&f| f, 2, &mut rng))
                .collect::<Vec<f64>>()
        };
        assert_eq!(picks(9), picks(9));
    }
}
