//! Gene operators beyond wording: the persona ("You are an expert film critic."), the output
//! constraint ("Answer with one word.") and few-shot demonstrations from the train split.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Family, Operator, OperatorContext};
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;

/// Sets, replaces or drops the persona: with a persona, drops it one time in three, else
/// replaces it with another pool persona; without one, sets a pool persona.
#[derive(Clone, Copy, Debug, Default)]
pub struct PersonaGene;

/// Sets, replaces or drops the output constraint (as [`PersonaGene`] does for personas).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConstraintGene;

/// Adds a train demonstration the genome lacks (at the end).
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoAdd;

/// Drops one demonstration.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoDrop;

/// Replaces one demonstration with a train demonstration the genome lacks.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoSwap;

/// The new value of an optional gene drawn from `choices`.
fn mutate_slot(
    current: &Option<String>,
    choices: &[String],
    rng: &mut ChaCha8Rng,
) -> Option<Option<String>> {
    let others: Vec<&String> = choices
        .iter()
        .filter(|c| Some(*c) != current.as_ref())
        .collect();
    match current {
        Some(_) if others.is_empty() || rng.gen_range(0..3) == 0 => Some(None),
        _ if others.is_empty() => None,
        _ => Some(Some(others[rng.gen_range(0..others.len())].clone())),
    }
}

single_parent!(PersonaGene, "persona", Family::Gene, |p, ctx, rng| {
    let persona = mutate_slot(&p.persona, &ctx.pool.personas, rng)?;
    Some(Genome {
        persona,
        ..p.clone()
    })
});

single_parent!(ConstraintGene, "constraint", Family::Gene, |p, ctx, rng| {
    let constraint = mutate_slot(&p.constraint, &ctx.pool.constraints, rng)?;
    Some(Genome {
        constraint,
        ..p.clone()
    })
});

single_parent!(DemoAdd, "demo-add", Family::Gene, |p, ctx, rng| {
    let fresh: Vec<&String> = ctx.demos.iter().filter(|d| !p.demos.contains(d)).collect();
    if fresh.is_empty() {
        return None;
    }
    let mut child = p.clone();
    child
        .demos
        .push(fresh[rng.gen_range(0..fresh.len())].clone());
    Some(child)
});

single_parent!(DemoDrop, "demo-drop", Family::Gene, |p, _ctx, rng| {
    if p.demos.is_empty() {
        return None;
    }
    let mut child = p.clone();
    child.demos.remove(rng.gen_range(0..p.demos.len()));
    Some(child)
});

single_parent!(DemoSwap, "demo-swap", Family::Gene, |p, ctx, rng| {
    let fresh: Vec<&String> = ctx.demos.iter().filter(|d| !p.demos.contains(d)).collect();
    if p.demos.is_empty() || fresh.is_empty() {
        return None;
    }
    let mut child = p.clone();
    let i = rng.gen_range(0..p.demos.len());
    child.demos[i] = fresh[rng.gen_range(0..fresh.len())].clone();
    Some(child)
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::genome;
    use crate::evolve::pool::PhrasePool;
    use rand::SeedableRng;

    fn ctx() -> OperatorContext<'static> {
        let pool = PhrasePool {
            personas: vec!["You are a critic.".into(), "You are a linguist.".into()],
            constraints: vec!["Answer with one word.".into()],
            ..PhrasePool::default()
        };
        OperatorContext {
            pool,
            demos: vec![
                "Review: good\nSentiment: positive".into(),
                "Review: bad\nSentiment: negative".into(),
            ],
            ..OperatorContext::default()
        }
    }

    fn apply(op: &dyn Operator, g: &Genome, seed: u64) -> Option<Genome> {
        op.apply(&[g], &mut ctx(), &mut ChaCha8Rng::seed_from_u64(seed))
            .unwrap()
    }

    #[test]
    fn persona_is_set_replaced_or_dropped() {
        let g = genome(&["Classify it."]);
        let with = apply(&PersonaGene, &g, 7).expect("sets a persona");
        assert_eq!(with.persona.as_deref(), Some("You are a critic."));
        assert_eq!(with.phrases, g.phrases);
        assert_eq!(with.render(), "You are a critic. Classify it.");
        let mut seen_drop = false;
        let mut seen_replace = false;
        for seed in 0..20 {
            let c = apply(&PersonaGene, &with, seed).expect("applies");
            match c.persona.as_deref() {
                None => seen_drop = true,
                Some("You are a linguist.") => seen_replace = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen_drop && seen_replace);
    }

    #[test]
    fn constraint_with_one_choice_toggles() {
        let g = genome(&["Classify it."]);
        let on = apply(&ConstraintGene, &g, 1).expect("sets");
        assert_eq!(on.render(), "Classify it. Answer with one word.");
        let off = apply(&ConstraintGene, &on, 1).expect("drops");
        assert_eq!(off, g);
        let empty = OperatorContext::default();
        let mut empty = empty;
        assert_eq!(
            PersonaGene
                .apply(&[&g], &mut empty, &mut ChaCha8Rng::seed_from_u64(0))
                .unwrap(),
            None
        );
    }

    #[test]
    fn demos_are_added_dropped_and_swapped_from_train_only() {
        let g = genome(&["Classify it."]);
        let one = apply(&DemoAdd, &g, 3).expect("adds");
        assert_eq!(one.demos, ["Review: bad\nSentiment: negative"]);
        assert_eq!(
            one.render(),
            "Classify it.\n\nReview: bad\nSentiment: negative"
        );
        let two = apply(&DemoAdd, &one, 3).expect("adds the other");
        assert_eq!(two.demos.len(), 2);
        assert_eq!(apply(&DemoAdd, &two, 3), None, "no fresh demo left");
        let swapped = apply(&DemoSwap, &one, 3).expect("swaps");
        assert_eq!(swapped.demos, ["Review: good\nSentiment: positive"]);
        assert_eq!(apply(&DemoSwap, &two, 3), None);
        assert_eq!(apply(&DemoDrop, &one, 3).expect("drops"), g);
        assert_eq!(apply(&DemoDrop, &g, 3), None);
    }
}
