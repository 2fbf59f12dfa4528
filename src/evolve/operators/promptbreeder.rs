//! Promptbreeder's mutation operators (Fernando et al., "Promptbreeder: Self-Referential
//! Self-Improvement via Prompt Evolution", 2023), run by the local model: first-order (apply a
//! mutation-prompt), zero-order (a new prompt from the task description), hypermutation (improve
//! the mutation-prompt with a thinking-style, then apply it), lineage-based (continue the list of
//! best prompts so far), and Lamarckian instruction induction (APE's "I gave a friend an
//! instruction" from correct train input-output pairs).

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::model::{ask_for_prompt, ask_for_text, with_genes_of, PROMPT_WRITER_SYSTEM};
use super::{Family, Operator, OperatorContext};
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

            fn apply(
                &self,
                parents: &[&Genome],
                ctx: &mut OperatorContext<'_>,
                rng: &mut ChaCha8Rng,
            ) -> Result<Option<Genome>, EvolveError> {
                let Some(parent) = parents.first() else {
                    return Ok(None);
                };
                let child = $ty::mutate(parent, ctx, rng)?;
                Ok(child.map(|g| with_genes_of(g, parent)))
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
model_operator!(Hypermutation, "pb-hypermutation", "Hypermutation: improves the mutation-prompt with a thinking-style, then applies it (the new mutation-prompt is left in the context).");
model_operator!(LineageBased, "pb-lineage", "Lineage-based mutation: the best prompts so far in ascending order of quality, continued by the model.");
model_operator!(Lamarckian, "pb-lamarckian", "Lamarckian mutation (instruction induction): an instruction written from a few correct train input-output pairs.");

fn mutation_prompt(ctx: &OperatorContext<'_>) -> String {
    ctx.mutation_prompt
        .clone()
        .unwrap_or_else(|| MUTATION_PROMPTS[0].to_string())
}

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
        parent: &Genome,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let mp = mutation_prompt(ctx);
        first_order(parent, &mp, ctx, rng)
    }
}

impl ZeroOrder {
    fn mutate(
        _parent: &Genome,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let user = format!(
            "{} Write one instruction that would help someone solve this task.\nINSTRUCTION:",
            ctx.task_description
        );
        ask_for_prompt(ctx, user, rng)
    }
}

impl Hypermutation {
    fn mutate(
        parent: &Genome,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let style = ctx
            .thinking_style
            .clone()
            .unwrap_or_else(|| THINKING_STYLES[0].to_string());
        let user = format!(
            "{style} Please summarize and improve the following instruction:\n{}",
            mutation_prompt(ctx)
        );
        let Some(new_mp) = ask_for_text(ctx, PROMPT_WRITER_SYSTEM, user, rng)? else {
            return Ok(None);
        };
        let child = first_order(parent, &new_mp, ctx, rng)?;
        if child.is_some() {
            ctx.new_mutation_prompt = Some(new_mp);
        }
        Ok(child)
    }
}

impl LineageBased {
    fn mutate(
        parent: &Genome,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let mut elites: Vec<String> = ctx
            .best
            .iter()
            .take(5)
            .map(Genome::render_phrases)
            .collect();
        if elites.is_empty() {
            elites.push(parent.render_phrases());
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
        ask_for_prompt(ctx, user, rng)
    }
}

impl Lamarckian {
    fn mutate(
        _parent: &Genome,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        if ctx.train_pairs.is_empty() {
            return Ok(None);
        }
        let pairs: Vec<(String, String)> =
            ctx.train_pairs.choose_multiple(rng, 5).cloned().collect();
        let shown: Vec<String> = pairs
            .iter()
            .map(|(i, o)| format!("Input: {i}\nOutput: {o}"))
            .collect();
        let user = format!(
            "I gave a friend an instruction and {} inputs. The friend read the instruction and wrote an output for every one of the inputs. Here are the input-output pairs:\n\n{}\n\nThe instruction was:",
            pairs.len(),
            shown.join("\n\n")
        );
        ask_for_prompt(ctx, user, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::genome;
    use crate::evolve::operators::model::tests::scripted;
    use rand::SeedableRng;

    #[test]
    fn each_operator_builds_its_meta_prompt() {
        let parent = genome(&["Classify the review."]);
        let mut gen = scripted(&["Better instruction.", "Decide the sentiment."]);
        let mut ctx = OperatorContext {
            generator: Some(&mut gen),
            task_description: "Binary sentiment of movie reviews.".into(),
            mutation_prompt: Some("Rewrite the following instruction in simpler words:".into()),
            thinking_style: Some("Let's think step by step.".into()),
            best: vec![genome(&["Best."]), genome(&["Second."])],
            train_pairs: vec![("good film".into(), "positive".into())],
            ..OperatorContext::default()
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
                op.apply(&[&parent], &mut ctx, &mut rng)
                    .unwrap()
                    .expect("applies"),
            );
        }
        assert_eq!(
            ctx.new_mutation_prompt.as_deref(),
            Some("Better instruction.")
        );
        drop(ctx);
        assert_eq!(children[0], genome(&["Better instruction."]));
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
