//! `contains`: an accepted answer occurs in the answer (case ignored).

use super::common::{best_over, each, Answer, Metric, MetricError, Params, Scored};

/// 1 when a lower-cased, trimmed accepted answer occurs in the lower-cased answer; fitness =
/// score.
#[derive(Debug)]
struct Contains;

/// The `contains` metric (no parameters).
pub fn new(_: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    Ok(Box::new(Contains))
}

impl Metric for Contains {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            let o = output.to_lowercase();
            best_over(targets, |t| {
                let t = t.trim().to_lowercase();
                Scored::plain(f64::from(!t.is_empty() && o.contains(&t)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{score, t};

    #[test]
    fn contains_finds_a_target_inside_the_answer() {
        let m = Contains;
        let s = |o: &str, ts: &[&str]| score(&m, o, &t(ts)).score;
        assert_eq!(s("I think it is Positive.", &["positive"]), 1.0);
        assert_eq!(s("negative", &["positive"]), 0.0);
        assert_eq!(s("anything", &[" "]), 0.0);
    }
}
