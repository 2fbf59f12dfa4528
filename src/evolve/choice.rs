//! The final choice: the search's top candidates on dev and the user's best initial prompt are
//! re-scored on a validation split the search never saw, and the answer is chosen there. Picking
//! the best of many candidates on the same dev examples overstates it (the winner's curse);
//! validation is an unbiased second look. The user's prompt stays the answer unless a candidate
//! beats it on validation.

use serde::{Deserialize, Serialize};

use super::error::EvolveError;
use super::search::{Scored, Search, INITIAL_OPERATOR};

/// One prompt re-scored on validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finalist {
    /// Candidate id.
    pub id: u64,
    /// Operator that made it ("initial" for the user's prompts).
    pub operator: String,
    /// The prompt text.
    pub prompt: String,
    /// Dev fitness (the search's score).
    pub dev_score: f64,
    /// Dev accuracy.
    pub dev_accuracy: f64,
    /// Validation fitness (mean per-example fitness).
    pub validation_score: f64,
    /// Validation accuracy.
    pub validation_accuracy: f64,
}

/// How the answer was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalChoice {
    /// Validation examples each finalist was scored on.
    pub validation_n: usize,
    /// The finalists: the best initial prompt first, then the top candidates on dev.
    pub finalists: Vec<Finalist>,
    /// Id of the chosen finalist.
    pub chosen: u64,
    /// Whether the user's best initial prompt stayed the answer.
    pub kept_initial: bool,
    /// One sentence saying why.
    pub reason: String,
}

/// Re-scores the best initial prompt and the `top` best candidates on dev on the first `n`
/// validation examples; returns the chosen candidate and how it was chosen. The highest
/// validation accuracy wins (the headline metric; ties: validation fitness, then dev fitness,
/// then the earlier id): a continuous fitness guides the search, but a prompt that is more
/// confident without being right more often must not become the answer. The best initial
/// prompt wins unless a candidate is strictly better on (accuracy, fitness).
/// None when there is no validation split.
pub fn choose_on_validation(
    search: &mut Search<'_, '_>,
    top: usize,
    n: usize,
) -> Result<Option<(Scored, FinalChoice)>, EvolveError> {
    if n == 0 || search.validation_size() == 0 {
        return Ok(None);
    }
    let ranked: Vec<Scored> = search.ranked_full().into_iter().cloned().collect();
    let Some(initial) = ranked
        .iter()
        .find(|s| s.candidate.operator == INITIAL_OPERATOR)
        .cloned()
    else {
        return Ok(None);
    };
    let mut pool = vec![initial.clone()];
    pool.extend(
        ranked
            .iter()
            .filter(|s| s.candidate.operator != INITIAL_OPERATOR)
            .take(top)
            .cloned(),
    );
    let candidates: Vec<_> = pool.iter().map(|s| s.candidate.clone()).collect();
    let results = search.validate(&candidates, n)?;
    let finalists: Vec<Finalist> = pool
        .iter()
        .zip(&results)
        .map(|(s, r)| Finalist {
            id: s.candidate.id,
            operator: s.candidate.operator.clone(),
            prompt: s.candidate.prompt(),
            dev_score: s.score,
            dev_accuracy: s.accuracy,
            validation_score: r.mean_fitness(),
            validation_accuracy: r.mean_metric(),
        })
        .collect();
    let key = |f: &Finalist| (f.validation_accuracy, f.validation_score, f.dev_score);
    let mut winner = 0;
    for (i, f) in finalists.iter().enumerate().skip(1) {
        if key(f).partial_cmp(&key(&finalists[winner])) == Some(std::cmp::Ordering::Greater) {
            winner = i;
        }
    }
    // The user's prompt is replaced only by a strictly better (accuracy, fitness) on validation.
    let (w, i) = (&finalists[winner], &finalists[0]);
    if (w.validation_accuracy, w.validation_score) <= (i.validation_accuracy, i.validation_score) {
        winner = 0;
    }
    let w = &finalists[winner];
    let kept_initial = winner == 0;
    let best_dev = &finalists[1.min(finalists.len() - 1)];
    let reason = if finalists.len() == 1 {
        "no candidate beyond the initial prompts was fully scored; the best initial prompt stays"
            .to_string()
    } else if kept_initial {
        format!(
            "no candidate beat the best initial prompt on {n} validation examples (its validation accuracy {:.1}%; the best candidate's {:.1}%); the initial prompt stays",
            100.0 * w.validation_accuracy,
            100.0 * finalists[1..]
                .iter()
                .map(|f| f.validation_accuracy)
                .fold(f64::NEG_INFINITY, f64::max)
        )
    } else if w.id == best_dev.id {
        format!(
            "#{} was best on dev and beat the best initial prompt on {n} validation examples (accuracy {:.1}% vs {:.1}%)",
            w.id,
            100.0 * w.validation_accuracy,
            100.0 * finalists[0].validation_accuracy
        )
    } else {
        format!(
            "#{} had the best validation accuracy of the top {} on dev ({:.1}% vs the best initial prompt's {:.1}%); #{} was best on dev but reached {:.1}% on validation",
            w.id,
            finalists.len() - 1,
            100.0 * w.validation_accuracy,
            100.0 * finalists[0].validation_accuracy,
            best_dev.id,
            100.0 * best_dev.validation_accuracy
        )
    };
    let chosen = pool[winner].clone();
    Ok(Some((
        chosen,
        FinalChoice {
            validation_n: n.min(search.validation_size()),
            chosen: w.id,
            kept_initial,
            reason,
            finalists,
        },
    )))
}
