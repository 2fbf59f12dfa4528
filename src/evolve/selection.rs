//! Parent selection (tournament, roulette, rank) and survivor selection (elitism).

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

/// Fitness-proportionate ("roulette wheel") selection: index i with probability
/// `(f_i - min + eps) / sum`, shifted so that the worst member keeps a small chance; NaN counts
/// as the minimum.
///
/// # Panics
/// If `population` is empty.
pub(crate) fn roulette<'a, T>(
    population: &'a [T],
    fitness: impl Fn(&T) -> f64,
    rng: &mut ChaCha8Rng,
) -> &'a T {
    assert!(
        !population.is_empty(),
        "roulette selection needs a non-empty population"
    );
    let f: Vec<f64> = population.iter().map(|x| rank_value(fitness(x))).collect();
    let finite_min = f
        .iter()
        .cloned()
        .filter(|x| x.is_finite())
        .fold(f64::INFINITY, f64::min);
    let finite_max = f
        .iter()
        .cloned()
        .filter(|x| x.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let eps = ((finite_max - finite_min) * 0.01).max(1e-9);
    let w: Vec<f64> = f
        .iter()
        .map(|&x| {
            if x.is_finite() {
                x - finite_min + eps
            } else {
                eps
            }
        })
        .collect();
    &population[weighted_index(&w, rng)]
}

/// Linear rank selection: sorted best first, member at rank r (0 = best) of n is chosen with
/// weight `n - r`.
///
/// # Panics
/// If `population` is empty.
pub fn rank<'a, T>(
    population: &'a [T],
    fitness: impl Fn(&T) -> f64,
    rng: &mut ChaCha8Rng,
) -> &'a T {
    assert!(
        !population.is_empty(),
        "rank selection needs a non-empty population"
    );
    let f: Vec<f64> = population.iter().map(fitness).collect();
    let order = elite_indices(&f, f.len());
    let n = order.len();
    let w: Vec<f64> = (0..n).map(|r| (n - r) as f64).collect();
    &population[order[weighted_index(&w, rng)]]
}

/// Index drawn with probability proportional to its (positive) weight.
fn weighted_index(w: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = w.iter().sum();
    let mut r = rng.gen_range(0.0..total);
    for (i, x) in w.iter().enumerate() {
        if r < *x {
            return i;
        }
        r -= x;
    }
    w.len() - 1
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

    #[test]
    fn roulette_and_rank_prefer_fitter_members() {
        use rand::SeedableRng;
        let pop = [0.2, 0.9, 0.5, f64::NAN];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut counts_roulette = [0usize; 4];
        let mut counts_rank = [0usize; 4];
        for _ in 0..4000 {
            let r = roulette(&pop, |x| *x, &mut rng);
            counts_roulette[pop.iter().position(|y| y.to_bits() == r.to_bits()).unwrap()] += 1;
            let r = rank(&pop, |x| *x, &mut rng);
            counts_rank[pop.iter().position(|y| y.to_bits() == r.to_bits()).unwrap()] += 1;
        }
        // Roulette: weights 0.007, 0.707, 0.307, 0.007 (shift by min 0.2, eps 0.007).
        assert!(counts_roulette[1] > counts_roulette[2] && counts_roulette[2] > counts_roulette[0]);
        assert!(counts_roulette[0] < 100 && counts_roulette[3] < 100);
        // Rank: 0.9 -> 4, 0.5 -> 3, 0.2 -> 2, NaN -> 1 (of 10).
        let expect = [0.2, 0.4, 0.3, 0.1];
        for (c, e) in counts_rank.iter().zip(expect) {
            assert!(((*c as f64 / 4000.0) - e).abs() < 0.03, "{counts_rank:?}");
        }
    }
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
