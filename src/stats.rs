//! Statistics, apart from presentation, shared by run reports and benchmarks: summaries, a
//! seeded percentile bootstrap and the Wilcoxon signed-rank test. Every function returns NaN for
//! no values.

use rand::{Rng, SeedableRng};

/// Resamples of the paired bootstrap.
pub const RESAMPLES: usize = 2000;

/// Largest number of non-zero differences whose Wilcoxon p-value is computed exactly; above it
/// the normal approximation (tie- and continuity-corrected) is accurate to a few thousandths.
pub(crate) const WILCOXON_EXACT_MAX: usize = 20;

/// Mean (NaN for no values).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Sample standard deviation (n - 1 denominator; 0 for one value, NaN for none).
pub(crate) fn std_dev(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(xs);
            (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        }
    }
}

/// Sorted copy.
fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Linear-interpolation quantile (`q` in [0, 1]) of `xs`; NaN for no values.
pub(crate) fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let v = sorted(xs);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Median (NaN for no values).
pub fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// 95% percentile-bootstrap interval of the mean of `diffs` (paired differences, or per-example
/// 0/1 correctness), resampling them [`RESAMPLES`] times from a stream seeded with `seed`; NaN
/// bounds for no values.
pub fn bootstrap_ci(diffs: &[f64], seed: u64) -> (f64, f64) {
    if diffs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = diffs.len();
    let means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| diffs[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    let means = sorted(&means);
    (
        means[RESAMPLES * 25 / 1000],
        means[RESAMPLES * 975 / 1000 - 1],
    )
}

/// Ranks of `xs` from 1, ties sharing their average rank.
pub fn average_ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// One-sided p-value of the exact sign test: the chance of at least `better` successes in
/// `better + worse` fair coin flips (McNemar's exact test on the examples where two prompts
/// differ). 1 when they never differ.
pub(crate) fn sign_test_p(better: usize, worse: usize) -> f64 {
    let n = better + worse;
    if n == 0 {
        return 1.0;
    }
    // Summed in log space: 0.5^n underflows past about 1,000 examples.
    let ln_choose = |k: usize| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let ln_half_n = n as f64 * 0.5f64.ln();
    (better..=n)
        .map(|k| (ln_choose(k) + ln_half_n).exp())
        .sum::<f64>()
        .min(1.0)
}

/// ln(k!) by summation (exact enough for the few thousand examples a split holds).
fn ln_factorial(k: usize) -> f64 {
    (2..=k).map(|i| (i as f64).ln()).sum()
}

/// Draws of the Monte Carlo sign-flip test when the differences are not all the same size.
pub(crate) const SIGN_FLIP_DRAWS: usize = 20_000;

/// One-sided p-value that paired differences are centred above 0, by flipping their signs: the
/// chance that a random sign assignment gives a sum at least the observed one. Zero differences
/// are dropped. When every non-zero difference has the same size (0/1 scores) this is the exact
/// [`sign_test_p`]; otherwise (weighted or partial-credit scores) it is estimated from
/// [`SIGN_FLIP_DRAWS`] draws of a fixed-seed stream, so the same differences always give the
/// same p. 1 when every difference is zero.
pub(crate) fn paired_sign_flip_p(diffs: &[f64]) -> f64 {
    let nz: Vec<f64> = diffs.iter().copied().filter(|d| *d != 0.0).collect();
    if nz.is_empty() {
        return 1.0;
    }
    let size = nz[0].abs();
    if nz
        .iter()
        .all(|d| (d.abs() - size).abs() <= 1e-12 * size.max(1.0))
    {
        let better = nz.iter().filter(|d| **d > 0.0).count();
        return sign_test_p(better, nz.len() - better);
    }
    let observed: f64 = nz.iter().sum();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let at_least = (0..SIGN_FLIP_DRAWS)
        .filter(|_| {
            let s: f64 = nz
                .iter()
                .map(|d| if rng.gen::<bool>() { d.abs() } else { -d.abs() })
                .sum();
            s >= observed - 1e-12
        })
        .count();
    (1 + at_least) as f64 / (1 + SIGN_FLIP_DRAWS) as f64
}

/// Two-sided p-value of the Wilcoxon signed-rank test that `diffs` are symmetric about 0. Zero
/// differences are dropped, tied |differences| share their average rank; with at most
/// [`WILCOXON_EXACT_MAX`] non-zero differences the p-value is exact (every sign assignment is
/// counted, with the tied ranks), above it the normal approximation is used. 1 when every
/// difference is zero.
pub(crate) fn wilcoxon_signed_rank(diffs: &[f64]) -> f64 {
    let nz: Vec<f64> = diffs.iter().copied().filter(|d| *d != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        return 1.0;
    }
    let ranks = average_ranks(&nz.iter().map(|d| d.abs()).collect::<Vec<_>>());
    let w_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| r)
        .sum();
    if n <= WILCOXON_EXACT_MAX {
        exact_p(&ranks, w_plus)
    } else {
        normal_p(&nz, w_plus)
    }
}

/// Exact two-sided p of W+ given the (average) ranks: every sign assignment is counted.
fn exact_p(ranks: &[f64], w_plus: f64) -> f64 {
    // Average ranks are multiples of 1/2: count sign assignments by doubled rank sum.
    let doubled: Vec<usize> = ranks.iter().map(|r| (2.0 * r).round() as usize).collect();
    let total: usize = doubled.iter().sum();
    let mut counts = vec![0f64; total + 1];
    counts[0] = 1.0;
    for &r in &doubled {
        for s in (r..=total).rev() {
            counts[s] += counts[s - r];
        }
    }
    let all = 2f64.powi(ranks.len() as i32);
    let obs = (2.0 * w_plus).round() as usize;
    let low: f64 = counts[..=obs].iter().sum::<f64>() / all;
    let high: f64 = counts[obs..].iter().sum::<f64>() / all;
    (2.0 * low.min(high)).min(1.0)
}

/// Two-sided p of W+ by the normal approximation, with tie and continuity corrections.
fn normal_p(nz: &[f64], w_plus: f64) -> f64 {
    let nf = nz.len() as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let mut tie_term = 0.0;
    let abs_sorted = sorted(&nz.iter().map(|d| d.abs()).collect::<Vec<_>>());
    let mut i = 0;
    while i < abs_sorted.len() {
        let t = abs_sorted[i..]
            .iter()
            .take_while(|x| **x == abs_sorted[i])
            .count();
        tie_term += (t * t * t - t) as f64;
        i += t;
    }
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    let z = ((w_plus - mean).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * normal_sf(z)).min(1.0)
}

/// Upper tail of the standard normal (Abramowitz and Stegun 7.1.26 erfc, error < 1.5e-7).
fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summaries_match_hand_computed_values() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!(close(mean(&xs), 5.0));
        // Sum of squares 32 over n - 1 = 7.
        assert!(close(std_dev(&xs), (32.0f64 / 7.0).sqrt()));
        assert!(close(median(&xs), 4.5));
        assert!(close(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), 2.0));
        assert_eq!(std_dev(&[3.0]), 0.0);
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn wilcoxon_exact_p_values_match_scipy() {
        // All five positive: W+ = 15 is the largest of 2^5 sums, p = 2/32.
        assert!(close(
            wilcoxon_signed_rank(&[1.0, 2.0, 3.0, 4.0, 5.0]),
            0.0625
        ));
        // W- = 2: sign sets with rank sum <= 2 are {}, {1}, {2}: p = 2 * 3/64.
        assert!(close(
            wilcoxon_signed_rank(&[1.0, -2.0, 3.0, 4.0, 5.0, 6.0]),
            0.09375
        ));
        // Zeros are dropped: the same as [1, 2, 3, 4, 5].
        assert!(close(
            wilcoxon_signed_rank(&[0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0]),
            0.0625
        ));
        // Ties share ranks 1.5, 1.5, 3: W+ = 4.5 of sums {0,1.5,1.5,3,3,4.5,4.5,6}:
        // P(W+ >= 4.5) = 3/8, p = 2 * 3/8.
        assert!(close(wilcoxon_signed_rank(&[1.0, -1.0, 2.0]), 0.75));
        // Symmetric differences: p = 1; no differences: p = 1.
        assert!(close(wilcoxon_signed_rank(&[1.0, -1.0]), 1.0));
        assert_eq!(wilcoxon_signed_rank(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn wilcoxon_normal_approximation_is_close_to_exact_at_the_switch() {
        let d: Vec<f64> = (1..=21)
            .map(|i| if i % 3 == 0 { -(i as f64) } else { i as f64 })
            .collect();
        let ranks = average_ranks(&d.iter().map(|x| x.abs()).collect::<Vec<_>>());
        let w_plus: f64 = d
            .iter()
            .zip(&ranks)
            .filter(|(x, _)| **x > 0.0)
            .map(|(_, r)| r)
            .sum();
        let (exact, approx) = (exact_p(&ranks, w_plus), wilcoxon_signed_rank(&d));
        assert_eq!(approx, normal_p(&d, w_plus));
        assert!((exact - approx).abs() < 0.01, "{exact} {approx}");
        assert!(normal_sf(0.0) > 0.4999 && normal_sf(0.0) < 0.5001);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
    }

    #[test]
    fn paired_bootstrap_is_seeded_and_brackets_the_mean() {
        let d = [0.1, 0.2, -0.05, 0.15, 0.0];
        let (lo, hi) = bootstrap_ci(&d, 7);
        assert!(lo <= mean(&d) && mean(&d) <= hi);
        assert_eq!(bootstrap_ci(&d, 7), (lo, hi));
        assert!(lo >= -0.05 && hi <= 0.2);
    }

    #[test]
    fn sign_test_matches_the_binomial_tail() {
        // 18 better, 4 worse: P(X >= 18 | n = 22, 1/2) = 0.0021718
        assert!((sign_test_p(18, 4) - 0.002_171_754_837_036_133).abs() < 1e-12);
        assert_eq!(sign_test_p(0, 0), 1.0);
        assert!((sign_test_p(1, 1) - 0.75).abs() < 1e-12);
        assert!((sign_test_p(5, 0) - 1.0 / 32.0).abs() < 1e-12);
        // Large n stays finite and sensible.
        let p = sign_test_p(600, 500);
        assert!(p > 0.0 && p < 0.01, "{p}");
    }

    #[test]
    fn sign_flip_is_the_sign_test_for_equal_sizes_and_weighs_sizes_otherwise() {
        let d = [1.0, 1.0, 1.0, -1.0, 0.0, 1.0];
        assert_eq!(paired_sign_flip_p(&d), sign_test_p(4, 1));
        assert_eq!(paired_sign_flip_p(&[0.0, 0.0]), 1.0);
        // Big wins and small losses are stronger evidence than the counts alone say.
        let weighted = [2.0, 2.0, 2.0, -0.5, -0.5, -0.5, 2.0, 2.0];
        let p = paired_sign_flip_p(&weighted);
        assert!(p < sign_test_p(5, 3), "{p}");
        assert_eq!(
            p,
            paired_sign_flip_p(&weighted),
            "seeded: the same p every time"
        );
    }
}
