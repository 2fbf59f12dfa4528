//! `number`: the answer's number (its last one, or the capture of `extract`) equals the
//! target within `tolerance`.

use regex::Regex;

use super::common::{best_over, each, Answer, BadTarget, Metric, MetricError, Params, Scored};

/// Absolute tolerance of a task file that names none: equal up to float noise.
const DEFAULT_TOLERANCE: f64 = 1e-6;

/// A number in text: optional sign, digits with optional thousands commas, optional decimals.
const NUMBER: &str = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+";

/// Numeric match; fitness = score.
#[derive(Debug)]
struct Number {
    number: Regex,
    extract: Option<Regex>,
    tolerance: f64,
}

/// The `number` metric: `tolerance` (absolute, default 1e-6) and `extract` (a regex whose first
/// capture group, or whole match, holds the number; default: the answer's last number).
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let tolerance = p.float("tolerance")?.unwrap_or(DEFAULT_TOLERANCE);
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        return Err(p.bad("tolerance", "must be a finite number >= 0, e.g. 0.01"));
    }
    let extract = match p.string("extract")? {
        Some(pattern) => Some(
            Regex::new(&pattern)
                .map_err(|e| p.bad("extract", format!("is not a valid regex: {}", one_line(&e))))?,
        ),
        None => None,
    };
    let number = Regex::new(NUMBER).map_err(|e| p.bad("extract", e))?;
    Ok(Box::new(Number {
        number,
        extract,
        tolerance,
    }))
}

/// A regex error's message on one line.
pub(super) fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` read as a number (thousands commas allowed).
fn parse(text: &str) -> Option<f64> {
    text.trim()
        .replace(',', "")
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

impl Number {
    /// The number an answer gives: the capture of `extract`, else its last number.
    fn of(&self, output: &str) -> Option<f64> {
        match &self.extract {
            Some(re) => {
                let caps = re.captures(output)?;
                let text = caps.get(1).or_else(|| caps.get(0))?.as_str();
                let last = self.number.find_iter(text).last()?;
                parse(last.as_str())
            }
            None => parse(self.number.find_iter(output).last()?.as_str()),
        }
    }
}

impl Metric for Number {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            let Some(x) = self.of(output) else {
                return Scored::plain(0.0);
            };
            best_over(targets, |t| {
                let hit = parse(t).is_some_and(|y| (x - y).abs() <= self.tolerance);
                Scored::plain(f64::from(hit))
            })
        })
    }

    fn check_target(&self, target: &str) -> Result<(), BadTarget> {
        match parse(target) {
            Some(_) => Ok(()),
            None => Err(BadTarget(format!(
                "target {target:?} is not a number, but the task's metric is \"number\"; fix the data or the task's `metric`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::task::metric::tests_support::{error, metric, score, t};

    #[test]
    fn the_last_number_counts_within_the_tolerance() {
        let m = metric("number", "");
        let s = |o: &str, ts: &[&str]| score(m.as_ref(), o, &t(ts)).score;
        assert_eq!(s(" 47", &["47"]), 1.0);
        assert_eq!(s("12 + 35 = 47.", &["47"]), 1.0);
        assert_eq!(s("47 or 48", &["47"]), 0.0);
        assert_eq!(s("-3", &["-3"]), 1.0);
        assert_eq!(s("1,234", &["1234"]), 1.0);
        assert_eq!(s("0.1", &["0.1000001"]), 1.0);
        assert_eq!(s("no idea", &["3"]), 0.0);
        let m = metric("number", "tolerance = 0.5");
        assert_eq!(score(m.as_ref(), "3.4", &t(&["3"])).score, 1.0);
        assert_eq!(score(m.as_ref(), "3.6", &t(&["3"])).score, 0.0);
    }

    #[test]
    fn extract_takes_the_first_capture() {
        let m = metric("number", "extract = 'answer: (\\S+)'");
        assert_eq!(score(m.as_ref(), "answer: 5, not 6", &t(&["5"])).score, 1.0);
        assert_eq!(score(m.as_ref(), "5, not 6", &t(&["5"])).score, 0.0);
    }

    #[test]
    fn bad_settings_and_targets_are_named() {
        let e = error("number", "extract = '('");
        assert!(
            e.contains("extract") && e.contains("not a valid regex"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = error("number", "tolerance = -1");
        assert!(e.contains("tolerance"), "{e}");
        assert!(metric("number", "").check_target("abc").is_err());
        assert!(metric("number", "").check_target(" 12").is_ok());
    }
}
