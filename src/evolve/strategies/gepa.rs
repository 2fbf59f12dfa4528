//! GEPA-style search, after Agrawal et al. 2025 ("GEPA: Reflective Prompt Evolution Can
//! Outperform Reinforcement Learning"): parents are sampled from the per-example Pareto front
//! (a candidate stays a contender while it is best on some dev example, weighted by how many),
//! children come from reflective mutation (the mutator sees the instruction and a few train
//! examples it gets wrong, with the gold and the predicted answer, and writes a revision) or,
//! one time in five, from a merge of two front members; every child must pass the search's
//! paired minibatch screening before it gets the rest of dev.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::error_driven::PROBE;
use super::strategy::{Setup, Strategy};
use crate::evolve::candidate::{Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::{ask_for_prompt, with_genes_of};
use crate::evolve::search::Search;

/// Operator name logged for reflective mutations.
pub(crate) const REFLECT: &str = "gepa-reflect";

/// Operator name logged for merges of two front members.
pub(crate) const MERGE: &str = "gepa-merge";

/// Share of children that are merges (when there are two front members to merge).
const MERGE_RATE: f64 = 0.2;

/// Failing examples shown to the mutator per reflection.
const SHOWN_FAILURES: usize = 3;

/// GEPA (`--strategy gepa`).
pub(crate) struct Gepa;

/// The Pareto front of the fully scored candidates: each with the number of dev examples on
/// which its fitness is the best (ties count for every candidate that reaches it).
pub(crate) fn pareto_front(search: &Search<'_, '_>) -> Vec<(Scored, usize)> {
    pareto_front_of(search, search.ranked_full())
}

/// The Pareto front of `full` (fully scored candidates), as [`pareto_front`] counts it.
pub(crate) fn pareto_front_of(search: &Search<'_, '_>, full: Vec<&Scored>) -> Vec<(Scored, usize)> {
    let n = search.dev_size();
    let mut wins = vec![0usize; full.len()];
    for e in 0..n {
        let score = |s: &Scored| {
            search
                .dev_results(s.candidate.id)
                .and_then(|r| r.get(e))
                .map_or(f64::NEG_INFINITY, |r| r.fitness)
        };
        let best = full
            .iter()
            .map(|s| score(s))
            .fold(f64::NEG_INFINITY, f64::max);
        for (k, s) in full.iter().enumerate() {
            if score(s) >= best {
                wins[k] += 1;
            }
        }
    }
    full.into_iter()
        .zip(wins)
        .filter(|(_, w)| *w > 0)
        .map(|(s, w)| (s.clone(), w))
        .collect()
}

/// A front member drawn with probability proportional to its wins.
pub(crate) fn draw<'a>(front: &'a [(Scored, usize)], rng: &mut ChaCha8Rng) -> &'a Scored {
    let total: usize = front.iter().map(|(_, w)| w).sum();
    let mut r = rng.gen_range(0..total.max(1));
    for (s, w) in front {
        if r < *w {
            return s;
        }
        r -= w;
    }
    &front[front.len() - 1].0
}

/// What one reflective mutation gave.
pub(crate) enum Reflection {
    /// The parent could not be probed on the train pool (none, or the budget is spent).
    NoProbe,
    /// The revision, or None when the parent failed no probed example, the model's reply was
    /// rejected or the prompt is not new.
    Child(Option<Candidate>),
}

/// Reflective mutation: probes `parent` on train examples (charged to the budget), shows the
/// model up to [`SHOWN_FAILURES`] it gets wrong with the gold and given answers, and proposes
/// the revised instruction (with the parent's other genes) as a child logged as [`REFLECT`].
pub(crate) fn reflect(
    search: &mut Search<'_, '_>,
    parent: &Candidate,
    generation: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Reflection, EvolveError> {
    let Some(results) = search.probe_train(parent, PROBE, rng)? else {
        return Ok(Reflection::NoProbe);
    };
    let train = search.ops.train;
    let failures: Vec<String> = results
        .iter()
        .filter(|r| r.metric < 1.0)
        .filter_map(|r| Some((r, train.get(r.example)?)))
        .take(SHOWN_FAILURES)
        .map(|(r, e)| {
            format!(
                "Input: {}\nCorrect answer: {}\nAnswer given: {}",
                e.input.trim(),
                e.target.trim(),
                r.predicted.trim()
            )
        })
        .collect();
    if failures.is_empty() {
        return Ok(Reflection::Child(None));
    }
    let user = format!(
        "Here is an instruction for a task:\n<instruction>{}</instruction>\n\nWith this instruction the assistant answered these inputs wrongly:\n\n{}\n\nRead the inputs and the correct answers, think about what the instruction misses, and write an improved instruction that would get them right. Reply with only the new instruction, bracketed with <prompt> and </prompt>.",
        parent.genome.render_phrases(),
        failures.join("\n\n")
    );
    let Some(g) = ask_for_prompt(&mut search.ops, user, rng)? else {
        return Ok(Reflection::Child(None));
    };
    let g = with_genes_of(g, &parent.genome);
    Ok(Reflection::Child(search.propose(
        g,
        vec![parent.id],
        REFLECT,
        generation,
    )))
}

impl Strategy for Gepa {
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        _setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if search.ops.generator.is_none() {
            return Err(EvolveError::Operators(
                "gepa writes revisions with the model, but no generator was given".into(),
            ));
        }
        search.initial_population(initial_prompts, usize::MAX, None, rng)
    }

    /// `--population` children, each a merge of two front members (one time in five, when
    /// there are two) or a reflective mutation of one.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        _population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let operators = setup.operators;
        let mut children = Vec::new();
        // Proposing and probing on train leave dev scores as they are, so the front holds for
        // the whole generation.
        let front = pareto_front(search);
        if front.is_empty() {
            return Ok(children);
        }
        for _ in 0..setup.cfg.population {
            let merge = front.len() >= 2 && operators.has_arity(2) && rng.gen_bool(MERGE_RATE);
            if merge {
                let a = draw(&front, rng).candidate.clone();
                let b = draw(&front, rng).candidate.clone();
                if a.id == b.id {
                    continue;
                }
                let Some(op) = operators.choose_arity(2, rng) else {
                    continue;
                };
                if let Some(g) = op.apply(&[&a.genome, &b.genome], &mut search.ops, rng)? {
                    children.extend(search.propose(g, vec![a.id, b.id], MERGE, generation));
                }
                continue;
            }
            let parent = draw(&front, rng).candidate.clone();
            match reflect(search, &parent, generation, rng)? {
                Reflection::NoProbe => break,
                Reflection::Child(child) => children.extend(child),
            }
        }
        Ok(children)
    }

    /// The best `--population` of everything fully scored so far.
    fn tell(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        _population: Vec<Scored>,
        _children: Vec<Scored>,
    ) -> Vec<Scored> {
        best_so_far(search, setup.cfg.population)
    }

    fn drops_children_when_stopped(&self) -> bool {
        true
    }
}

/// The best `n` fully scored candidates so far, best first: the population of the strategies
/// that draw parents from the whole archive (gepa, opro).
pub(crate) fn best_so_far(search: &Search<'_, '_>, n: usize) -> Vec<Scored> {
    search.ranked_full().into_iter().take(n).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::evolve::strategies::SearchConfig;

    #[test]
    fn reflection_sees_failing_train_examples_and_children_come_from_the_front() {
        let cfg = SearchConfig {
            strategy: "gepa".into(),
            generations: 3,
            ..SearchConfig::default()
        };
        let (outcome, ev, asked) = run_with_generator(&cfg, 4);
        check_lineage(&ev);
        let reflections = ev.received.iter().filter(|c| c.operator == REFLECT).count();
        assert!(reflections > 0);
        // The mutator saw train failures with their gold answer, never a dev example.
        let text: String = asked.iter().flatten().map(|m| m.content.clone()).collect();
        assert!(text.contains("Correct answer: positive"), "{text}");
        assert!(!text.contains("dev"));
        assert!(ev.pools.contains(&crate::evolve::results::Pool::Train));
        assert_reaches_the_toy_optimum(&outcome);
        assert_eq!(trace_with_generator(&cfg, 4), trace_with_generator(&cfg, 4));
    }
}
