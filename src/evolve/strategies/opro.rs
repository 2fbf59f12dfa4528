//! OPRO, after Yang et al. 2023 ("Large Language Models as Optimizers"): each step shows the
//! mutator the best instructions so far with their scores, sorted ascending (the best last),
//! and a few train input-output pairs, and asks for a new instruction that scores higher. The
//! child keeps the best candidate's persona, constraint and demonstrations.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::gepa::best_so_far;
use super::strategy::{Setup, Strategy};
use crate::evolve::candidate::{Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::{ask_for_prompt, with_genes_of};
use crate::evolve::search::Search;

/// Operator name logged for OPRO's children.
pub(crate) const OPRO: &str = "opro";

/// Past instructions shown in the meta-prompt.
const TRAJECTORY: usize = 8;

/// Train input-output pairs shown in the meta-prompt.
const EXEMPLARS: usize = 3;

/// OPRO (`--strategy opro`).
pub(crate) struct Opro;

/// OPRO's meta-prompt: the trajectory (instruction, score 0-100) ascending, then exemplars.
pub(crate) fn meta_prompt(trajectory: &[(String, f64)], exemplars: &[(String, String)]) -> String {
    let mut s = String::from(
        "Your task is to write an instruction for a task. Below are some previous instructions with their scores. The score ranges from 0 to 100.\n\n",
    );
    for (text, score) in trajectory {
        s += &format!("text:\n{text}\nscore:\n{:.0}\n\n", 100.0 * score);
    }
    s += "Below are some examples of the task.\n\n";
    for (input, output) in exemplars {
        s += &format!("input:\n{}\noutput:\n{}\n\n", input.trim(), output.trim());
    }
    s + "Write your new instruction that is different from the old ones and has a score as high as possible. Write the instruction bracketed with <prompt> and </prompt>."
}

impl Strategy for Opro {
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        _setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if search.ops.generator.is_none() {
            return Err(EvolveError::Operators(
                "opro writes every child with the model, but no generator was given".into(),
            ));
        }
        search.initial_population(initial_prompts, usize::MAX, None, rng)
    }

    /// `--population` children, each the model's answer to the meta-prompt.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        _population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let mut children = Vec::new();
        for _ in 0..setup.cfg.population {
            let ranked = best_so_far(search, TRAJECTORY);
            let Some(best) = ranked.first().cloned() else {
                break;
            };
            // Ascending by the score shown (accuracy), so the best comes last.
            let mut shown: Vec<&Scored> = ranked.iter().collect();
            shown.sort_by(|a, b| {
                a.accuracy
                    .total_cmp(&b.accuracy)
                    .then(a.score.total_cmp(&b.score))
            });
            let trajectory: Vec<(String, f64)> = shown
                .iter()
                .map(|s| (s.candidate.genome.render_phrases(), s.accuracy))
                .collect();
            let pairs = search.ops.train.pairs();
            let exemplars: Vec<(String, String)> = (0..EXEMPLARS.min(pairs.len()))
                .map(|_| {
                    let e = &pairs[rng.gen_range(0..pairs.len())];
                    (e.input.clone(), e.target.clone())
                })
                .collect();
            let user = meta_prompt(&trajectory, &exemplars);
            if let Some(g) = ask_for_prompt(&mut search.ops, user, rng)? {
                let g = with_genes_of(g, &best.candidate.genome);
                children.extend(search.propose(g, vec![best.candidate.id], OPRO, generation));
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::SearchConfig;
    use super::*;

    #[test]
    fn the_trajectory_is_sorted_ascending_and_children_descend_from_the_best() {
        let cfg = SearchConfig {
            strategy: "opro".into(),
            generations: 3,
            ..SearchConfig::default()
        };
        let (outcome, ev, asked) = run_with_generator(&cfg, 2);
        check_lineage(&ev);
        assert!(ev.received.iter().any(|c| c.operator == OPRO));
        let user = &asked.last().unwrap()[1].content;
        let scores: Vec<f64> = user
            .split("score:\n")
            .skip(1)
            .map(|t| t.lines().next().unwrap().parse().unwrap())
            .collect();
        assert!(
            scores.len() >= 2 && scores.windows(2).all(|w| w[0] <= w[1]),
            "{scores:?}"
        );
        assert_reaches_the_toy_optimum(&outcome);
    }

    #[test]
    fn meta_prompt_shows_scores_out_of_100() {
        let m = meta_prompt(&[("Do it.".into(), 0.5)], &[("a".into(), "b".into())]);
        assert!(m.contains("text:\nDo it.\nscore:\n50\n") && m.contains("input:\na\noutput:\nb"));
    }
}
