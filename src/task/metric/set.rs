//! `set`: the answer's items equal an accepted answer's items as sets, order and repeats
//! ignored (APE's `es`, "exact set"); fitness is the item-level F1.

use std::collections::BTreeSet;

use super::common::{best_over, each, Answer, Metric, MetricError, Params, Scored};

/// The separator of a task file that names none.
const DEFAULT_SEPARATOR: &str = ",";

/// Order-insensitive exact match of items.
#[derive(Debug)]
struct Set {
    /// Splits items; blank (e.g. " ") splits on any run of whitespace.
    separator: String,
}

/// The `set` metric: `separator` (default ","; " " splits on whitespace, as APE's `es` does).
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let separator = p
        .string("separator")?
        .unwrap_or_else(|| DEFAULT_SEPARATOR.to_string());
    if separator.is_empty() {
        return Err(p.bad(
            "separator",
            "is empty: give the text between items, e.g. \",\" (or \" \" for whitespace)",
        ));
    }
    Ok(Box::new(Set { separator }))
}

impl Set {
    /// The items of `text`, as APE's `es` normalises them. With a blank separator (APE's
    /// case): " and " removed, the first line, lower-cased, `-` read as a space, split on
    /// whitespace, ASCII punctuation removed from each word. With another separator: the first
    /// line split on it, each item lower-cased, `-` read as a space, ASCII punctuation removed,
    /// whitespace collapsed and a leading "and " (a list's last conjunction) dropped. Empty
    /// items are dropped either way.
    fn items(&self, text: &str) -> BTreeSet<String> {
        let clean = |item: &str| -> String {
            item.to_lowercase()
                .replace('-', " ")
                .chars()
                .filter(|c| !c.is_ascii_punctuation())
                .collect()
        };
        if self.separator.trim().is_empty() {
            let text = text.replace(" and ", " ");
            let line = text.trim().lines().next().unwrap_or("");
            return clean(line).split_whitespace().map(str::to_string).collect();
        }
        let line = text.trim().lines().next().unwrap_or("");
        line.split(self.separator.as_str())
            .map(|item| {
                let cleaned = clean(item);
                let words: Vec<&str> = cleaned.split_whitespace().collect();
                match words.as_slice() {
                    ["and", rest @ ..] => rest.join(" "),
                    all => all.join(" "),
                }
            })
            .filter(|item| !item.is_empty())
            .collect()
    }
}

/// Item-level F1 of two sets (1 when both are empty).
fn set_f1(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = a.intersection(b).count() as f64;
    if common == 0.0 {
        return 0.0;
    }
    2.0 * common / (a.len() + b.len()) as f64
}

impl Metric for Set {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            let o = self.items(output);
            best_over(targets, |t| {
                let t = self.items(t);
                Scored {
                    score: f64::from(o == t),
                    fitness: set_f1(&o, &t),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{score, t};

    fn set(separator: &str) -> Set {
        Set {
            separator: separator.into(),
        }
    }

    #[test]
    fn items_match_in_any_order_case_and_spacing() {
        let m = set(",");
        let s = |o: &str, ts: &[&str]| score(&m, o, &t(ts));
        assert_eq!(
            s(" Dog, cat,bird.", &["cat, bird, dog"]),
            Scored::plain(1.0)
        );
        assert_eq!(s("dog, cat, and bird", &["cat, bird, dog"]).score, 1.0);
        // Repeats do not count; only the first line is read.
        assert_eq!(s("dog, dog, cat\nbird", &["cat, dog"]).score, 1.0);
        // One item missing: no score, partial fitness (2 common of 2 + 3 items -> 0.8).
        let r = s("dog, cat", &["cat, bird, dog"]);
        assert_eq!(r.score, 0.0);
        assert!((r.fitness - 0.8).abs() < 1e-12, "{r:?}");
        assert_eq!(s("fish", &["cat"]), Scored::plain(0.0));
        // The best target counts.
        assert_eq!(s("a, b", &["c", "b, a"]).score, 1.0);
    }

    #[test]
    fn a_blank_separator_splits_on_whitespace_and_others_split_on_themselves() {
        assert_eq!(
            score(&set(" "), " thinks  that.", &t(&["that thinks"])).score,
            1.0
        );
        assert_eq!(score(&set(";"), "a b; c", &t(&["c;a b"])).score, 1.0);
        assert_eq!(score(&set(";"), "a; b; c", &t(&["c;a b"])).score, 0.0);
    }

    #[test]
    fn an_empty_separator_is_a_config_error() {
        let mut p = Params::new(
            "set",
            toml::from_str("separator = \"\"").unwrap(),
            std::path::Path::new("."),
        );
        let e = new(&mut p).unwrap_err().to_string();
        assert!(e.contains("separator") && e.contains("empty"), "{e}");
    }
}
