//! `rouge`: ROUGE-L F-measure (Lin, 2004) between a prose answer and the best accepted answer,
//! tokenised as Google's `rouge_score` does by default (lower-cased, runs of `[a-z0-9]`, no
//! stemming).

use super::common::{best_over, each, Answer, Metric, MetricError, Params, Scored};

/// ROUGE-L F1 of the longest common subsequence of tokens; with a `threshold`, the headline
/// score is 1 where the F1 reaches it (else 0) and the F1 stays the fitness.
#[derive(Debug)]
struct RougeL {
    threshold: Option<f64>,
}

/// The `rouge` metric: `threshold` (optional, in (0, 1]): count an answer as right when its
/// ROUGE-L F1 reaches it; without one the score is the F1 itself.
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let threshold = p.float("threshold")?;
    if let Some(t) = threshold {
        if !(t > 0.0 && t <= 1.0) {
            return Err(p.bad(
                "threshold",
                format!("is {t}: give a number in (0, 1], e.g. 0.5"),
            ));
        }
    }
    Ok(Box::new(RougeL { threshold }))
}

impl Metric for RougeL {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            best_over(targets, |t| {
                let f = rouge_l(output, t);
                match self.threshold {
                    Some(min) => Scored {
                        score: f64::from(f >= min),
                        fitness: f,
                    },
                    None => Scored::plain(f),
                }
            })
        })
    }
}

/// `rouge_score`'s default tokens: lower-cased, every run of ASCII letters and digits.
fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// ROUGE-L F1 between a prediction and one reference (0 when either has no tokens).
pub(crate) fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (tokens(prediction), tokens(reference));
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    // Longest common subsequence by dynamic programming over one row.
    let mut row = vec![0usize; r.len() + 1];
    for a in &p {
        let mut diagonal = 0;
        for (j, b) in r.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if a == b {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    let lcs = row[r.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (lcs / p.len() as f64, lcs / r.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{score, t};

    #[test]
    fn rouge_l_counts_the_longest_common_subsequence() {
        // LCS of "the cat sat on the mat" and "the cat was on the mat" is 5 of 6 tokens each.
        let f = rouge_l("The cat sat on the mat.", "the cat was on the mat");
        assert!((f - 5.0 / 6.0).abs() < 1e-12, "{f}");
        // Order matters (unlike f1): "mat the on" and "on the mat" share a 1-token subsequence.
        assert!((rouge_l("mat the on", "on the mat") - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(rouge_l("", "cat"), 0.0);
        assert_eq!(rouge_l("dog", "cat"), 0.0);
        // Punctuation and case do not count; digits are tokens.
        assert_eq!(rouge_l("Route-66!", "route 66"), 1.0);
    }

    #[test]
    fn rouge_l_equals_googles_rouge_score() {
        // rouge_score 0.1.2: RougeScorer(["rougeL"]).score(reference, prediction).fmeasure.
        let cases = [
            (
                "The judge was contacted, by the scientist!",
                "the scientist contacted the judge",
                0.5,
            ),
            ("Café au lait 2x", "cafe au lait 2 x", 0.4444444444444445),
            ("a b c d e f", "f e d c b a", 0.16666666666666666),
            ("It's 10:30 now.", "it is 10 30 now", 0.8000000000000002),
        ];
        for (prediction, reference, want) in cases {
            let got = rouge_l(prediction, reference);
            assert!(
                (got - want).abs() < 1e-12,
                "{prediction:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn a_threshold_makes_the_score_all_or_nothing_and_keeps_the_f1_as_fitness() {
        let plain = RougeL { threshold: None };
        assert!(
            (score(&plain, "the cat sat", &t(&["the cat was here"])).score - 4.0 / 7.0).abs()
                < 1e-12
        );
        let strict = RougeL {
            threshold: Some(0.6),
        };
        let s = score(&strict, "the cat sat", &t(&["the cat was here", "a dog"]));
        assert_eq!(s.score, 0.0);
        assert!((s.fitness - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(
            score(&strict, "the cat sat", &t(&["the cat sat down"])).score,
            1.0
        );
    }
}
