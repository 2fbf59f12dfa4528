//! The final choice: the search's top candidates on dev and the user's best initial prompt are
//! re-scored on a validation split the search never saw, and the answer is chosen there. Picking
//! the best of many candidates on the same dev examples overstates it (the winner's curse), and
//! so does picking the best of several finalists on 100 validation examples: a 4-point lead
//! there is about one standard error. So the user's prompt stays the answer unless the
//! challenger (the finalist best on validation) beats it by a paired test on the examples both
//! were scored on:
//!
//! - an exact one-sided sign test (McNemar's) on validation at [`VALIDATION_ALPHA`], or
//! - the same test on dev and validation pooled at the stricter [`POOLED_ALPHA`] (the dev lead
//!   is inflated by the search having chosen the challenger there, so it counts only when the
//!   evidence is strong; a challenger behind on dev drags the pooled test down);
//!
//! and only while its validation lead is positive. When neither test passes but the challenger
//! leads on validation, validation grows (doubles, up to what the task has) and both are tested
//! again. The levels come from replaying the committed benchmark's runs
//! (`cargo bench --bench final_choice`, experiments/results/2026-12-03-final-choice).

use serde::{Deserialize, Serialize};

use super::candidate::{Scored, INITIAL_OPERATOR};
use super::error::EvolveError;
use super::results::{ExampleResult, Results};
use super::search::Search;
use crate::stats;

/// One-sided level of the sign test on validation alone.
pub(crate) const VALIDATION_ALPHA: f64 = 0.05;

/// One-sided level of the sign test on dev and validation pooled.
pub(crate) const POOLED_ALPHA: f64 = 0.01;

/// What a finalist is judged by, per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// The task's metric (accuracy for classification): the headline.
    Metric,
    /// The search's fitness (used when it is balanced accuracy, whose mean is the criterion).
    Fitness,
}

impl Criterion {
    /// This example's value under the criterion.
    pub fn of(self, r: &ExampleResult) -> f64 {
        match self {
            Criterion::Metric => r.metric,
            Criterion::Fitness => r.fitness,
        }
    }
}

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
    /// Validation fitness (mean per-example fitness) on the first look's examples.
    pub validation_score: f64,
    /// Validation accuracy on the first look's examples.
    pub validation_accuracy: f64,
}

/// A challenger against the best initial prompt on the examples both were scored on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedEvidence {
    /// Examples compared.
    pub n: usize,
    /// Examples where the challenger scored higher.
    pub better: usize,
    /// Examples where it scored lower.
    pub worse: usize,
    /// Mean criterion difference, challenger minus initial.
    pub mean_diff: f64,
    /// One-sided p-value that the challenger is better (sign test; sign-flip test for
    /// weighted or partial-credit scores).
    pub p_value: f64,
}

impl PairedEvidence {
    /// The evidence from paired differences.
    pub(crate) fn from_diffs(diffs: &[f64]) -> Self {
        Self {
            n: diffs.len(),
            better: diffs.iter().filter(|d| **d > 0.0).count(),
            worse: diffs.iter().filter(|d| **d < 0.0).count(),
            mean_diff: if diffs.is_empty() {
                0.0
            } else {
                stats::mean(diffs)
            },
            p_value: stats::paired_sign_flip_p(diffs),
        }
    }

    /// "18 better, 4 worse of 100, +14.0 pts, p = 0.002".
    pub fn describe(&self) -> String {
        format!(
            "{} better, {} worse of {}, {:+.1} pts, one-sided p = {}",
            self.better,
            self.worse,
            self.n,
            100.0 * self.mean_diff,
            format_p(self.p_value)
        )
    }
}

/// A p-value with as many digits as it needs.
fn format_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// Which test decided, and its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChoiceTest {
    /// The challenger: the finalist best on validation.
    pub challenger: u64,
    /// What the finalists were compared by.
    pub criterion: Criterion,
    /// Validation sizes looked at, in order (more than one when validation grew).
    pub looks: Vec<usize>,
    /// The challenger against the initial prompt on validation (the last look).
    pub validation: PairedEvidence,
    /// The same on the dev examples both were scored on.
    pub dev: PairedEvidence,
    /// Dev and validation pooled.
    pub pooled: PairedEvidence,
    /// Level of the validation test.
    pub validation_alpha: f64,
    /// Level of the pooled test.
    pub pooled_alpha: f64,
    /// Whether the challenger won.
    pub accepted: bool,
    /// Which test decided ("validation sign test", "pooled sign test", or why none could).
    pub decided_by: String,
}

/// How the answer was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalChoice {
    /// Validation examples each finalist was scored on at the first look.
    pub validation_n: usize,
    /// The finalists: the best initial prompt first, then the top candidates on dev.
    pub finalists: Vec<Finalist>,
    /// Id of the chosen finalist.
    pub chosen: u64,
    /// Whether the user's best initial prompt stayed the answer.
    pub kept_initial: bool,
    /// One sentence saying why.
    pub reason: String,
    /// The paired test of the challenger against the initial prompt (absent in runs made
    /// before it existed, and when no candidate beyond the initial prompts was fully scored).
    #[serde(default)]
    pub test: Option<ChoiceTest>,
}

/// Per-example criterion differences, challenger minus initial, on the examples both hold.
pub fn paired_diffs(challenger: &Results, initial: &Results, criterion: Criterion) -> Vec<f64> {
    paired_diffs_below(challenger, initial, criterion, usize::MAX)
}

/// [`paired_diffs`] on the examples with index below `upto`.
pub fn paired_diffs_below(
    challenger: &Results,
    initial: &Results,
    criterion: Criterion,
    upto: usize,
) -> Vec<f64> {
    challenger
        .iter()
        .filter(|c| c.example < upto)
        .filter_map(|c| {
            initial
                .get(c.example)
                .map(|i| criterion.of(c) - criterion.of(i))
        })
        .collect()
}

/// The significance levels of the final choice's two tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    /// One-sided level of the sign test on validation alone.
    pub validation: f64,
    /// One-sided level of the sign test on dev and validation pooled.
    pub pooled: f64,
}

/// The levels the product uses ([`VALIDATION_ALPHA`], [`POOLED_ALPHA`]).
pub const LEVELS: Levels = Levels {
    validation: VALIDATION_ALPHA,
    pooled: POOLED_ALPHA,
};

/// The decision on one look: accepted, and which test decided.
pub fn decide(
    validation: &PairedEvidence,
    pooled: &PairedEvidence,
    levels: Levels,
) -> (bool, &'static str) {
    if validation.mean_diff <= 0.0 {
        return (false, "no validation lead");
    }
    if validation.p_value < levels.validation {
        return (true, "validation sign test");
    }
    if pooled.p_value < levels.pooled {
        return (true, "pooled dev + validation sign test");
    }
    (false, "not significant")
}

/// Where the sequence of looks ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequential {
    /// Validation sizes looked at, in order.
    pub looks: Vec<usize>,
    /// The challenger against the initial prompt on validation at the last look.
    pub validation: PairedEvidence,
    /// Dev and validation pooled at the last look.
    pub pooled: PairedEvidence,
    /// Whether the challenger won.
    pub accepted: bool,
    /// Which test decided.
    pub decided_by: &'static str,
}

/// The final choice's test, look after look: decides on the first `n` validation examples and,
/// while the challenger leads without either test passing, doubles `n` (up to `capacity`) and
/// decides again. `validation_diffs(n)` gives the paired differences on the first `n`
/// validation examples (scoring what it must); `dev_diffs` are the dev ones. The search and the
/// final-choice benchmark share this function.
pub fn sequential_test<E>(
    dev_diffs: &[f64],
    n: usize,
    capacity: usize,
    levels: Levels,
    mut validation_diffs: impl FnMut(usize) -> Result<Vec<f64>, E>,
) -> Result<Sequential, E> {
    let mut looks = vec![n];
    loop {
        let seen = *looks.last().unwrap_or(&n);
        let val = validation_diffs(seen)?;
        let validation = PairedEvidence::from_diffs(&val);
        let pooled = PairedEvidence::from_diffs(&[dev_diffs, val.as_slice()].concat());
        let (accepted, decided_by) = decide(&validation, &pooled, levels);
        if accepted || validation.mean_diff <= 0.0 || seen >= capacity {
            return Ok(Sequential {
                looks,
                validation,
                pooled,
                accepted,
                decided_by,
            });
        }
        // Close: a lead the tests cannot yet tell from noise. Look at more examples.
        looks.push((2 * seen).min(capacity));
    }
}

/// The challenger among `finalists` (the best initial prompt first, then the candidates): the
/// best validation criterion, then validation fitness, then dev fitness, the earliest on ties.
/// 0 when there is no candidate.
pub fn challenger_index(finalists: &[Finalist], criterion: Criterion) -> usize {
    let key = |f: &Finalist| {
        let value = match criterion {
            Criterion::Metric => f.validation_accuracy,
            Criterion::Fitness => f.validation_score,
        };
        (value, f.validation_score, f.dev_score)
    };
    let mut c = usize::from(finalists.len() > 1);
    for i in 2..finalists.len() {
        if key(&finalists[i]).partial_cmp(&key(&finalists[c])) == Some(std::cmp::Ordering::Greater)
        {
            c = i;
        }
    }
    c
}

/// Re-scores the best initial prompt and the `top` best candidates on dev on the first
/// validation examples; the challenger (best validation criterion; ties: validation fitness,
/// dev fitness, earlier id) replaces the initial prompt only when a paired test says it is
/// better (see the module docs), growing validation while the decision is close. None when
/// there is no validation split.
pub(crate) fn choose_on_validation(
    search: &mut Search<'_, '_>,
    top: usize,
    criterion: Criterion,
) -> Result<Option<(Scored, FinalChoice)>, EvolveError> {
    let n = search.validation_size();
    if n == 0 {
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
    let mut results = search.validate(&candidates, n)?;
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
    if finalists.len() == 1 {
        return Ok(Some((
            initial,
            FinalChoice {
                validation_n: n,
                chosen: finalists[0].id,
                kept_initial: true,
                reason: "no candidate beyond the initial prompts was fully scored; the best initial prompt stays".into(),
                finalists,
                test: None,
            },
        )));
    }
    let c = challenger_index(&finalists, criterion);
    let dev_diffs = match (
        search.dev_results(pool[c].candidate.id),
        search.dev_results(initial.candidate.id),
    ) {
        (Some(ch), Some(init)) => paired_diffs(ch, init, criterion),
        _ => Vec::new(),
    };
    let dev = PairedEvidence::from_diffs(&dev_diffs);
    let capacity = search.validation_capacity();
    let (initial_candidate, challenger_candidate) =
        (pool[0].candidate.clone(), pool[c].candidate.clone());
    let Sequential {
        looks,
        validation,
        pooled,
        accepted,
        decided_by,
    } = sequential_test(&dev_diffs, n, capacity, LEVELS, |upto| {
        for (i, cand) in [(0, &initial_candidate), (c, &challenger_candidate)] {
            let missing: Vec<usize> = (0..upto).filter(|e| !results[i].contains(*e)).collect();
            let r = search.validate_on(cand, &missing)?;
            results[i].extend(r);
        }
        Ok::<_, EvolveError>(paired_diffs_below(
            &results[c],
            &results[0],
            criterion,
            upto,
        ))
    })?;
    let winner = if accepted { c } else { 0 };
    let (w, i, ch) = (&finalists[winner], &finalists[0], &finalists[c]);
    let last = *looks.last().unwrap_or(&n);
    let grew = if looks.len() > 1 {
        format!(" (validation grew from {n} to {last} examples because the first look was close)")
    } else {
        String::new()
    };
    let reason = if accepted {
        format!(
            "#{} beat the best initial prompt #{} by the {decided_by}{grew}: validation {}; dev {}",
            w.id,
            i.id,
            validation.describe(),
            dev.describe()
        )
    } else if validation.mean_diff <= 0.0 {
        format!(
            "the best challenger #{} did not lead the best initial prompt #{} on validation ({}){grew}; the initial prompt stays",
            ch.id,
            i.id,
            validation.describe()
        )
    } else {
        format!(
            "the best challenger #{}'s lead over the best initial prompt #{} is within noise{grew}: validation {} (needs p < {VALIDATION_ALPHA}); dev and validation pooled {} (needs p < {POOLED_ALPHA}); the initial prompt stays",
            ch.id,
            i.id,
            validation.describe(),
            pooled.describe()
        )
    };
    let chosen = pool[winner].clone();
    let test = ChoiceTest {
        challenger: ch.id,
        criterion,
        looks,
        validation,
        dev,
        pooled,
        validation_alpha: VALIDATION_ALPHA,
        pooled_alpha: POOLED_ALPHA,
        accepted,
        decided_by: decided_by.to_string(),
    };
    Ok(Some((
        chosen,
        FinalChoice {
            validation_n: n,
            chosen: w.id,
            kept_initial: !accepted,
            reason,
            finalists,
            test: Some(test),
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(better: usize, worse: usize, n: usize) -> PairedEvidence {
        let mut d = vec![1.0; better];
        d.extend(vec![-1.0; worse]);
        d.resize(n, 0.0);
        PairedEvidence::from_diffs(&d)
    }

    #[test]
    fn a_small_validation_lead_after_a_best_of_six_is_not_enough() {
        // The held-out sentiment task: 92% vs 88% on 100 validation examples.
        let v = evidence(7, 3, 100);
        assert!((v.mean_diff - 0.04).abs() < 1e-12);
        assert!(v.p_value > VALIDATION_ALPHA, "{}", v.p_value);
        // With a dev lead of the size the search's selection alone makes, still not enough.
        let pooled = evidence(7 + 9, 3 + 4, 200);
        assert_eq!(decide(&v, &pooled, LEVELS), (false, "not significant"));
        // Behind on dev and 1 point ahead on validation: pooled evidence is against it.
        let v = evidence(5, 4, 100);
        let pooled = evidence(5 + 6, 4 + 8, 200);
        assert!(!decide(&v, &pooled, LEVELS).0);
    }

    #[test]
    fn the_readme_main_jobs_lead_passes() {
        // Validation 88% vs 74%: 18 better, 4 worse.
        let v = evidence(18, 4, 100);
        assert_eq!(decide(&v, &v, LEVELS), (true, "validation sign test"));
        // A lead that validation alone cannot show but dev confirms strongly.
        let v = evidence(11, 5, 100);
        let pooled = evidence(11 + 14, 5 + 3, 200);
        assert_eq!(
            decide(&v, &pooled, LEVELS),
            (true, "pooled dev + validation sign test")
        );
        // No lead on validation: never, whatever dev says.
        let v = evidence(5, 5, 100);
        assert!(!decide(&v, &evidence(40, 5, 200), LEVELS).0);
    }

    use crate::evolve::candidate::Candidate;
    use crate::evolve::genome::Genome;
    use crate::evolve::results::Pool;
    use crate::evolve::search::{Evaluator, SearchLimits};
    use crate::evolve::strategies::testing::context;
    use rand::SeedableRng;

    /// Dev: both right everywhere. Validation (start 20, capacity 80): the initial prompt is
    /// right on even examples; the challenger ("Be careful.") also on every example 10k + 1,
    /// and, when `fades`, wrong on every example 10k + 4 and 10k + 6 past the first look.
    struct Close {
        fades: bool,
        validation_calls: Vec<(u64, Vec<usize>)>,
    }

    impl Evaluator for Close {
        fn pool_size(&self, pool: Pool) -> usize {
            match pool {
                Pool::Dev => 10,
                Pool::Validation => 20,
                Pool::Train => 0,
            }
        }
        fn validation_capacity(&self) -> usize {
            80
        }
        fn evaluate(
            &mut self,
            c: &Candidate,
            pool: Pool,
            examples: &[usize],
        ) -> Result<Vec<ExampleResult>, EvolveError> {
            if pool == Pool::Validation {
                self.validation_calls.push((c.id, examples.to_vec()));
            }
            let challenger = c.prompt().contains("careful");
            Ok(examples
                .iter()
                .map(|&e| {
                    let right = match pool {
                        Pool::Validation if challenger => {
                            (e % 2 == 0 && !(self.fades && e >= 20 && matches!(e % 10, 4 | 6)))
                                || e % 10 == 1
                        }
                        Pool::Validation => e % 2 == 0,
                        _ => true,
                    };
                    let v = f64::from(u8::from(right));
                    ExampleResult {
                        example: e,
                        fitness: v,
                        metric: v,
                        predicted: String::new(),
                    }
                })
                .collect())
        }
    }

    fn choose(fades: bool) -> (FinalChoice, Vec<(u64, Vec<usize>)>) {
        let mut ev = Close {
            fades,
            validation_calls: Vec::new(),
        };
        let choice = {
            let mut search = Search::new(&mut ev, context(), SearchLimits::default());
            let rng = &mut rand_chacha::ChaCha8Rng::seed_from_u64(0);
            search
                .initial_population(&["Classify it.".to_string()], 1, None, rng)
                .unwrap();
            let child = search
                .propose(Genome::parse("Be careful."), vec![0], "insert", 1)
                .unwrap();
            search.score(vec![child], rng).unwrap();
            choose_on_validation(&mut search, 5, Criterion::Metric)
                .unwrap()
                .unwrap()
                .1
        };
        (choice, ev.validation_calls)
    }

    #[test]
    fn a_close_lead_grows_validation_and_a_lead_that_holds_wins() {
        let (choice, calls) = choose(false);
        let t = choice.test.clone().unwrap();
        // 2 better of 20 (p = 0.25), then 4 of 40: pooled with dev ties, p = 0.0625; then
        // 8 of 80: p = 0.0039 < 0.05.
        assert_eq!(t.looks, vec![20, 40, 80], "{}", choice.reason);
        assert!(t.accepted && !choice.kept_initial, "{}", choice.reason);
        assert_eq!(t.decided_by, "validation sign test");
        assert_eq!((t.validation.better, t.validation.worse), (8, 0));
        // Only the initial prompt and the challenger were scored again, each example once.
        assert_eq!(calls.len(), 2 + 2 * 2);
        assert_eq!(calls[2].1, (20..40).collect::<Vec<_>>());
        assert_eq!(calls[4].1, (40..80).collect::<Vec<_>>());
        assert!(
            choice.reason.contains("grew from 20 to 80"),
            "{}",
            choice.reason
        );
    }

    #[test]
    fn a_close_lead_that_fades_on_more_examples_keeps_the_initial_prompt() {
        let (choice, _) = choose(true);
        let t = choice.test.unwrap();
        // 2 better of 20, then at 40 examples: 4 better, 4 worse -> no lead.
        assert_eq!(t.looks, vec![20, 40]);
        assert!(!t.accepted && choice.kept_initial);
        assert_eq!(choice.chosen, 0);
        assert!(choice.reason.contains("did not lead"), "{}", choice.reason);
    }
}
