//! Prompt length as a second objective in reports: users pay for every prompt token at every
//! call, so a report shows the front of candidates no shorter one beats (accuracy against prompt
//! tokens, on dev and on validation) and names the shortest candidate whose validation score is
//! within one standard error of the chosen one (`best-short.txt`).

use serde::{Deserialize, Serialize};

/// One candidate on the accuracy-vs-length plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LengthPoint {
    /// Candidate id.
    pub id: u64,
    /// Prompt tokens (the text at `{prompt}`, demonstrations included).
    pub tokens: usize,
    /// Its headline score (accuracy, or the task's metric) on the split of the front.
    pub score: f64,
}

/// The report's prompt-length section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LengthReport {
    /// Whether tokens were counted with the scoring model's tokenizer (false: estimated at one
    /// token per 4 characters, for a server without a tokenize endpoint).
    pub counted: bool,
    /// Fully scored candidates that no shorter-or-equal candidate beats on dev, shortest first.
    pub dev_front: Vec<LengthPoint>,
    /// The same among the finalists on validation (empty without a final choice).
    pub validation_front: Vec<LengthPoint>,
    /// The split the short answer was chosen on ("validation", else "dev").
    pub basis: String,
    /// Examples of that split.
    pub n: usize,
    /// The chosen answer.
    pub chosen: LengthPoint,
    /// One standard error of the chosen answer's score there: the tolerance.
    pub tolerance: f64,
    /// The shortest candidate scoring at least the chosen one's minus the tolerance.
    pub best_short: LengthPoint,
    /// Its prompt (written to `best-short.txt`).
    pub best_short_prompt: String,
}

/// The points no other point beats: kept when no point at most as long scores higher (ties on
/// length: the higher score; then the earlier id). Returned shortest first.
pub fn front(points: &[LengthPoint]) -> Vec<LengthPoint> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| {
        a.tokens
            .cmp(&b.tokens)
            .then(b.score.total_cmp(&a.score))
            .then(a.id.cmp(&b.id))
    });
    let mut out: Vec<LengthPoint> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|last| p.score > last.score) {
            out.push(p);
        }
    }
    out
}

/// Standard error of a mean score `p` in [0, 1] over `n` examples (binomial).
pub(crate) fn standard_error(p: f64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (p.clamp(0.0, 1.0) * (1.0 - p.clamp(0.0, 1.0)) / n as f64).sqrt()
}

/// The shortest of `points` scoring at least `chosen.score - standard error` over `n`
/// examples (ties: higher score, earlier id); `chosen` itself when none is shorter.
pub(crate) fn shortest_within(
    points: &[LengthPoint],
    chosen: &LengthPoint,
    n: usize,
) -> LengthPoint {
    let tolerance = standard_error(chosen.score, n);
    points
        .iter()
        .filter(|p| p.score >= chosen.score - tolerance - 1e-12)
        .min_by(|a, b| {
            a.tokens
                .cmp(&b.tokens)
                .then(b.score.total_cmp(&a.score))
                .then(a.id.cmp(&b.id))
        })
        .cloned()
        .unwrap_or_else(|| chosen.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64, tokens: usize, score: f64) -> LengthPoint {
        LengthPoint { id, tokens, score }
    }

    #[test]
    fn the_front_keeps_what_no_shorter_prompt_beats() {
        let pts = [
            p(0, 10, 0.80),
            p(1, 50, 0.85),
            p(2, 40, 0.90),
            p(3, 12, 0.70),
            p(4, 10, 0.75),
        ];
        let f = front(&pts);
        assert_eq!(f.iter().map(|x| x.id).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn the_short_answer_is_the_shortest_within_one_standard_error() {
        // Chosen: 88% on 100 examples, SE = 3.2 pts: 85% qualifies, 84% does not.
        let chosen = p(5, 120, 0.88);
        let pts = [
            chosen.clone(),
            p(1, 30, 0.84),
            p(2, 60, 0.85),
            p(3, 90, 0.90),
        ];
        assert!((standard_error(0.88, 100) - 0.0325).abs() < 1e-3);
        assert_eq!(shortest_within(&pts, &chosen, 100).id, 2);
        // Nothing shorter qualifies: the chosen prompt itself.
        assert_eq!(
            shortest_within(std::slice::from_ref(&chosen), &chosen, 100).id,
            5
        );
    }
}
