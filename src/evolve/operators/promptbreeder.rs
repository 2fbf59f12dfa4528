//! Promptbreeder's mutation operators (Fernando et al., "Promptbreeder: Self-Referential
//! Self-Improvement via Prompt Evolution", 2023), run by the local model: first-order (apply a
//! mutation-prompt), zero-order (a new prompt from the task description), hypermutation (improve
//! the mutation-prompt with a thinking-style, then apply it), lineage-based (continue the list of
//! best prompts so far), and Lamarckian instruction induction (APE's "I gave a friend an
//! instruction" from correct train input-output pairs).

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::model::{ask_for_prompt, ask_for_text, with_genes_of, PROMPT_WRITER_SYSTEM};
use super::operator::{Family, Operator, OperatorContext, Unit};
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;

/// Initial mutation-prompts (a sample of Promptbreeder's list).
pub const MUTATION_PROMPTS: [&str; 8] = [
    "Modify the following instruction creatively, giving some advice on how to solve it:",
    "Change the following instruction so that it is clearer and more specific:",
    "Rewrite the following instruction in simpler words:",
    "Make a variant of the following instruction that a careful expert would give:",
    "Improve the following instruction so that a student could follow it without mistakes:",
    "Say the following instruction differently, and shorter:",
    "Add one helpful hint to the following instruction:",
    "Rephrase the following instruction as a direct question:",
];

/// Thinking-styles used by hypermutation (a sample of Promptbreeder's list).
pub const THINKING_STYLES: [&str; 6] = [
    "Let's think step by step.",
    "How could I simplify the problem so that it is easier to solve?",
    "What are the key assumptions underlying this problem?",
    "Let's make a step by step plan and explain it well.",
    "How can I break down this problem into smaller parts?",
    "What is the core issue that needs to be addressed?",
];

impl Unit {
    /// A prompt as a unit with the first of [`MUTATION_PROMPTS`] (a prompt outside a
    /// Promptbreeder population, e.g. when another strategy uses these operators).
    pub fn of(genome: Genome) -> Unit {
        Unit {
            genome,
            mutation_prompt: MUTATION_PROMPTS[0].to_string(),
        }
    }
}

macro_rules! model_operator {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $ty;

        impl Operator for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn family(&self) -> Family {
                Family::Model
            }

            fn arity(&self) -> usize {
                1
            }

            /// The parent as a unit with the first mutation-prompt, mutated with the first
            /// thinking-style.
            fn apply(
                &self,
                parents: &[&Genome],
                ctx: &mut OperatorContext<'_>,
                rng: &mut ChaCha8Rng,
            ) -> Result<Option<Genome>, EvolveError> {
                let Some(parent) = parents.first() else {
                    return Ok(None);
                };
                let unit = Unit::of((*parent).clone());
                Ok(self
                    .apply_unit(&unit, THINKING_STYLES[0], ctx, rng)?
                    .map(|u| u.genome))
            }

            fn apply_unit(
                &self,
                unit: &Unit,
                thinking_style: &str,
                ctx: &mut OperatorContext<'_>,
                rng: &mut ChaCha8Rng,
            ) -> Result<Option<Unit>, EvolveError> {
                let child = $ty::mutate(unit, thinking_style, ctx, rng)?;
                Ok(child.map(|(g, mutation_prompt)| Unit {
                    genome: with_genes_of(g, &unit.genome),
                    mutation_prompt: mutation_prompt
                        .unwrap_or_else(|| unit.mutation_prompt.clone()),
                }))
            }
        }
    };
}

model_operator!(
    FirstOrder,
    "pb-first-order",
    "First-order mutation: the unit's mutation-prompt applied to its prompt."
);
model_operator!(
    ZeroOrder,
    "pb-zero-order",
    "Zero-order generation: a new prompt from the task description alone."
);
model_operator!(Hypermutation, "pb-hypermutation", "Hypermutation: improves the unit's mutation-prompt with a thinking-style, then applies it (the mutant's unit carries the new mutation-prompt).");
model_operator!(LineageBased, "pb-lineage", "Lineage-based mutation: the best prompts so far in ascending order of quality, continued by the model.");
model_operator!(Lamarckian, "pb-lamarckian", "Lamarckian mutation (instruction induction): an instruction written from a few correct train input-output pairs.");

/// The mutant's phrases, and a new mutation-prompt for its unit (None: the parent's).
type Mutant = Option<(Genome, Option<String>)>;

fn first_order(
    parent: &Genome,
    mp: &str,
    ctx: &mut OperatorContext<'_>,
    rng: &mut ChaCha8Rng,
) -> Result<Option<Genome>, EvolveError> {
    let user = format!(
        "{mp}\nINSTRUCTION: {}\nINSTRUCTION MUTANT:",
        parent.render_phrases()
    );
    ask_for_prompt(ctx, user, rng)
}

impl FirstOrder {
    fn mutate(
        unit: &Unit,
        _thinking_style: &str,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Mutant, EvolveError> {
        Ok(first_order(&unit.genome, &unit.mutation_prompt, ctx, rng)?.map(|g| (g, None)))
    }
}

impl ZeroOrder {
    fn mutate(
        _unit: &Unit,
        _thinking_style: &str,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Mutant, EvolveError> {
        let user = format!(
            "{} Write one instruction that would help someone solve this task.\nINSTRUCTION:",
            ctx.task_description
        );
        Ok(ask_for_prompt(ctx, user, rng)?.map(|g| (g, None)))
    }
}

impl Hypermutation {
    fn mutate(
        unit: &Unit,
        thinking_style: &str,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Mutant, EvolveError> {
        let user = format!(
            "{thinking_style} Please summarize and improve the following instruction:\n{}",
            unit.mutation_prompt
        );
        let Some(new_mp) = ask_for_text(ctx, PROMPT_WRITER_SYSTEM, user, rng)? else {
            return Ok(None);
        };
        let child = first_order(&unit.genome, &new_mp, ctx, rng)?;
        Ok(child.map(|g| (g, Some(new_mp))))
    }
}

impl LineageBased {
    fn mutate(
        unit: &Unit,
        _thinking_style: &str,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Mutant, EvolveError> {
        let mut elites: Vec<String> = ctx
            .best
            .iter()
            .take(5)
            .map(Genome::render_phrases)
            .collect();
        if elites.is_empty() {
            elites.push(unit.genome.render_phrases());
        }
        elites.reverse();
        let list: Vec<String> = elites
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}. {p}", i + 1))
            .collect();
        let user = format!(
            "INSTRUCTION GENOTYPES FOUND, IN ASCENDING ORDER OF QUALITY\n{}\nWrite the next, better instruction.\nINSTRUCTION:",
            list.join("\n")
        );
        Ok(ask_for_prompt(ctx, user, rng)?.map(|g| (g, None)))
    }
}

impl Lamarckian {
    fn mutate(
        _unit: &Unit,
        _thinking_style: &str,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Mutant, EvolveError> {
        let train = ctx.train;
        if train.pairs().is_empty() {
            return Ok(None);
        }
        let shown: Vec<String> = train
            .pairs()
            .choose_multiple(rng, 5)
            .map(|e| format!("Input: {}\nOutput: {}", e.input, e.target))
            .collect();
        let user = format!(
            "I gave a friend an instruction and {} inputs. The friend read the instruction and wrote an output for every one of the inputs. Here are the input-output pairs:\n\n{}\n\nThe instruction was:",
            shown.len(),
            shown.join("\n\n")
        );
        Ok(ask_for_prompt(ctx, user, rng)?.map(|g| (g, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::model::tests::scripted;
    use crate::evolve::operators::operator::genome;
    use crate::evolve::train::TrainPool;
    use rand::SeedableRng;

    #[test]
    fn each_operator_builds_its_meta_prompt() {
        let parent = genome(&["Classify the review."]);
        let mut gen = scripted(&["Better instruction.", "Decide the sentiment."]);
        let train = TrainPool::from_triples(&[("good film", "positive", "")]);
        let mut ctx = OperatorContext {
            generator: Some(&mut gen),
            task_description: "Binary sentiment of movie reviews.".into(),
            best: vec![genome(&["Best."]), genome(&["Second."])],
            train: &train,
            ..OperatorContext::default()
        };
        let unit = Unit {
            genome: parent.clone(),
            mutation_prompt: "Rewrite the following instruction in simpler words:".into(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ops: [&dyn Operator; 5] = [
            &FirstOrder,
            &ZeroOrder,
            &Hypermutation,
            &LineageBased,
            &Lamarckian,
        ];
        let mut children = Vec::new();
        for op in ops {
            children.push(
                op.apply_unit(&unit, "Let's think step by step.", &mut ctx, &mut rng)
                    .unwrap()
                    .expect("applies"),
            );
        }
        drop(ctx);
        // Only hypermutation gives its mutant a new mutation-prompt.
        for (k, child) in children.iter().enumerate() {
            let want = if k == 2 {
                "Better instruction."
            } else {
                unit.mutation_prompt.as_str()
            };
            assert_eq!(child.mutation_prompt, want, "operator {k}");
        }
        assert_eq!(children[0].genome, genome(&["Better instruction."]));
        let asked: Vec<&str> = gen.asked.iter().map(|m| m[1].content.as_str()).collect();
        assert!(asked[0].starts_with("Rewrite the following instruction in simpler words:\nINSTRUCTION: Classify the review."));
        assert!(asked[1].starts_with("Binary sentiment of movie reviews."));
        assert!(asked[2].starts_with("Let's think step by step. Please summarize and improve"));
        // Hypermutation then applies the new mutation-prompt.
        assert!(asked[3].starts_with("Better instruction.\nINSTRUCTION: Classify the review."));
        assert!(asked[4].contains("1. Second.\n2. Best."));
        assert!(asked[5].contains("Input: good film\nOutput: positive"));
    }
}
