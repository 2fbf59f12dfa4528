//! Metrics: accuracy and macro-F1 over label predictions.

/// Fraction of predictions equal to the gold label.
pub fn accuracy(gold: &[usize], predicted: &[usize]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let hits = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    hits as f64 / gold.len() as f64
}

/// Unweighted mean over the `n_labels` classes of per-class F1 (a class never predicted and
/// never gold counts as F1 = 0 only if it appears in either; absent classes are skipped).
pub fn macro_f1(gold: &[usize], predicted: &[usize], n_labels: usize) -> f64 {
    let mut f1s = Vec::new();
    for c in 0..n_labels {
        let tp = gold
            .iter()
            .zip(predicted)
            .filter(|(g, p)| **g == c && **p == c)
            .count() as f64;
        let fp = gold
            .iter()
            .zip(predicted)
            .filter(|(g, p)| **g != c && **p == c)
            .count() as f64;
        let fn_ = gold
            .iter()
            .zip(predicted)
            .filter(|(g, p)| **g == c && **p != c)
            .count() as f64;
        if tp + fp + fn_ == 0.0 {
            continue;
        }
        f1s.push(2.0 * tp / (2.0 * tp + fp + fn_));
    }
    if f1s.is_empty() {
        0.0
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

/// The fraction of the most frequent gold label (what always guessing it would score).
pub fn majority_rate(gold: &[usize], n_labels: usize) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let mut counts = vec![0usize; n_labels];
    for g in gold {
        counts[*g] += 1;
    }
    *counts.iter().max().unwrap_or(&0) as f64 / gold.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_macro_f1_on_a_known_case() {
        let gold = [0, 0, 1, 1];
        let pred = [0, 1, 1, 1];
        assert_eq!(accuracy(&gold, &pred), 0.75);
        // class 0: tp1 fp0 fn1 -> 2/3; class 1: tp2 fp1 fn0 -> 4/5
        assert!((macro_f1(&gold, &pred, 2) - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert_eq!(majority_rate(&gold, 2), 0.5);
    }

    #[test]
    fn constant_predictor_gets_low_macro_f1() {
        let gold = [0, 1, 1, 1];
        let pred = [1, 1, 1, 1];
        assert_eq!(accuracy(&gold, &pred), 0.75);
        assert!(macro_f1(&gold, &pred, 2) < 0.5);
    }
}
