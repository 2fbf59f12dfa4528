//! `regex`: the answer matches `pattern`, or, when the pattern has a capture group, its first
//! capture equals an accepted answer (normalised as `exact` does).

use regex::Regex;

use super::common::{best_over, each, Answer, Metric, MetricError, Params, Scored};
use super::exact::normalise_exact;
use super::number::one_line;

/// Pattern match or captured answer; fitness = score.
#[derive(Debug)]
struct Pattern {
    pattern: Regex,
}

/// The `regex` metric: `pattern` (required; Rust `regex` syntax, searched anywhere in the
/// answer; `(?i)` ignores case).
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let Some(text) = p.string("pattern")? else {
        return Err(p.bad(
            "pattern",
            "is missing: add e.g. pattern = \"^(yes|no)$\" to the [metric] table",
        ));
    };
    let pattern = Regex::new(&text)
        .map_err(|e| p.bad("pattern", format!("is not a valid regex: {}", one_line(&e))))?;
    Ok(Box::new(Pattern { pattern }))
}

impl Metric for Pattern {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            if self.pattern.captures_len() < 2 {
                return Scored::plain(f64::from(self.pattern.is_match(output)));
            }
            let Some(captured) = self
                .pattern
                .captures(output)
                .and_then(|c| c.get(1))
                .map(|m| normalise_exact(m.as_str()))
            else {
                return Scored::plain(0.0);
            };
            best_over(targets, |t| {
                Scored::plain(f64::from(normalise_exact(t) == captured))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{error, metric, score, t};

    #[test]
    fn a_pattern_without_groups_checks_the_form() {
        let m = metric("regex", "pattern = '^\\s*(?i:yes|no)\\.?$'");
        assert_eq!(score(m.as_ref(), " Yes.", &t(&["no"])).score, 1.0);
        assert_eq!(score(m.as_ref(), "maybe", &t(&["no"])).score, 0.0);
    }

    #[test]
    fn a_capture_group_is_compared_with_the_targets() {
        let m = metric("regex", "pattern = 'Answer: (\\w+)'");
        assert_eq!(
            score(m.as_ref(), "Answer: Cold", &t(&["cold"])),
            Scored::plain(1.0)
        );
        assert_eq!(score(m.as_ref(), "Answer: hot", &t(&["cold"])).score, 0.0);
        assert_eq!(score(m.as_ref(), "cold", &t(&["cold"])).score, 0.0);
    }

    #[test]
    fn a_missing_or_broken_pattern_is_named() {
        let e = error("regex", "");
        assert!(e.contains("pattern") && e.contains("missing"), "{e}");
        let e = error("regex", "pattern = '(['");
        assert!(
            e.contains("pattern") && e.contains("not a valid regex"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
