//! `exact`: the answer equals an accepted answer, case, surrounding space and end punctuation
//! ignored (APE's `em`, without its article and inner-punctuation rules).

use super::common::{best_over, each, Answer, Metric, MetricError, Params, Scored};

/// Exact match after [`normalise_exact`]; fitness = score.
#[derive(Debug)]
struct Exact;

/// The `exact` metric (no parameters).
pub fn new(_: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    Ok(Box::new(Exact))
}

impl Metric for Exact {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            let o = normalise_exact(output);
            best_over(targets, |t| {
                Scored::plain(f64::from(normalise_exact(t) == o))
            })
        })
    }
}

/// Trimmed, lower-cased, with punctuation at either end removed (" Slow." -> "slow").
pub fn normalise_exact(text: &str) -> String {
    text.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{score, t};

    #[test]
    fn exact_match_ignores_case_space_and_end_punctuation_and_takes_any_target() {
        let m = Exact;
        assert_eq!(score(&m, " Slow.", &t(&["slow"])), Scored::plain(1.0));
        assert_eq!(score(&m, " slowly", &t(&["slow"])), Scored::plain(0.0));
        assert_eq!(score(&m, "cat", &t(&["dog", "Cat"])), Scored::plain(1.0));
        assert_eq!(score(&m, "cat", &[]), Scored::plain(0.0));
    }
}
