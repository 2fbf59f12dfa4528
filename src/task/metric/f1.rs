//! `f1`: SQuAD token-overlap F1 between the answer and the best accepted answer.

use std::collections::HashMap;

use super::common::{best_over, each, Answer, Metric, MetricError, Params, Scored};

/// SQuAD token F1 (lower-cased, punctuation and articles removed), best over the accepted
/// answers; the score is the F1 and so is the fitness.
#[derive(Debug)]
struct F1;

/// The `f1` metric (no parameters).
pub fn new(_: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    Ok(Box::new(F1))
}

impl Metric for F1 {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            best_over(targets, |t| Scored::plain(token_f1(output, t)))
        })
    }
}

/// SQuAD's answer normalisation: lower-case, punctuation removed, articles (a, an, the)
/// removed, whitespace collapsed; returned as tokens.
pub fn squad_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

/// SQuAD token-overlap F1 between a prediction and one gold answer (1 when both normalise to
/// nothing, 0 when only one does).
pub fn token_f1(prediction: &str, gold: &str) -> f64 {
    let p = squad_tokens(prediction);
    let g = squad_tokens(gold);
    if p.is_empty() || g.is_empty() {
        return f64::from(p.is_empty() && g.is_empty());
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0usize;
    for t in &p {
        if let Some(c) = counts.get_mut(t.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{score, t};

    #[test]
    fn token_f1_matches_squad_on_known_cases() {
        // "the cat sat" vs "a cat sat down": tokens [cat, sat] vs [cat, sat, down] -> P 1, R 2/3.
        assert!((token_f1("the cat sat", "a cat sat down") - 0.8).abs() < 1e-12);
        assert_eq!(token_f1("The Cat!", "cat"), 1.0);
        assert_eq!(token_f1("dog", "cat"), 0.0);
        assert_eq!(token_f1("the", "a"), 1.0);
        assert_eq!(token_f1("", "cat"), 0.0);
        // Repeated tokens count once per gold occurrence.
        assert!((token_f1("cat cat", "cat") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(score(&F1, "dog", &t(&["cat", "dog"])), Scored::plain(1.0));
        // The fitness is the F1 itself (partial credit).
        assert!((score(&F1, "the cat sat", &t(&["a cat sat down"])).fitness - 0.8).abs() < 1e-12);
    }
}
