//! Gene operators beyond wording: the persona ("You are an expert film critic."), the output
//! constraint ("Answer with one word.") and few-shot demonstrations from the train split.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::operator::{Family, Operator, OperatorContext};
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;
use crate::evolve::train::TrainPool;

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

/// Replaces one demonstration with a train demonstration the genome lacks, of the same label
/// when there is one (so a balanced set stays balanced).
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoSwap;

/// Replaces every demonstration with a fresh label-balanced set: one per label (two per label
/// one time in four, while that stays within [`MAX_DEMO_SET`]), in random order.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoSet;

/// Reorders the demonstrations (this model is sensitive to which comes last).
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoOrder;

/// Most demonstrations `demo-set` draws.
pub(crate) const MAX_DEMO_SET: usize = 8;

/// The train pool's examples the genome lacks as demonstrations, as ids grouped by label
/// (labels in first-seen order).
fn fresh_by_label<'c>(p: &Genome, ctx: &OperatorContext<'c>) -> Vec<(&'c str, Vec<usize>)> {
    let train: &'c TrainPool = ctx.train;
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, e) in train.examples().iter().enumerate() {
        if p.demos.contains(&i) {
            continue;
        }
        let label = e.target.as_str();
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(i),
            None => groups.push((label, vec![i])),
        }
    }
    groups
}

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
    // Prefer the labels the genome's demonstrations show least (label balance).
    let groups = fresh_by_label(p, ctx);
    let shown = |label: &str| {
        p.demos
            .iter()
            .filter(|&&d| ctx.train.label(d) == Some(label))
            .count()
    };
    let least = groups.iter().map(|(l, _)| shown(l)).min()?;
    let fresh: Vec<usize> = groups
        .iter()
        .filter(|(l, _)| shown(l) == least)
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let mut child = p.clone();
    child.demos.push(fresh[rng.gen_range(0..fresh.len())]);
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
    if p.demos.is_empty() {
        return None;
    }
    let i = rng.gen_range(0..p.demos.len());
    let groups = fresh_by_label(p, ctx);
    let label = ctx.train.label(p.demos[i]);
    let same: Vec<usize> = groups
        .iter()
        .filter(|(l, _)| Some(*l) == label)
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let fresh: Vec<usize> = if same.is_empty() {
        groups.iter().flat_map(|(_, v)| v.iter().copied()).collect()
    } else {
        same
    };
    if fresh.is_empty() {
        return None;
    }
    let mut child = p.clone();
    child.demos[i] = fresh[rng.gen_range(0..fresh.len())];
    Some(child)
});

single_parent!(DemoSet, "demo-set", Family::Gene, |p, ctx, rng| {
    let groups = fresh_by_label(&Genome::default(), ctx);
    if groups.is_empty() {
        return None;
    }
    let per_label = if rng.gen_range(0..4) == 0 && 2 * groups.len() <= MAX_DEMO_SET {
        2
    } else {
        1
    };
    let mut demos: Vec<usize> = Vec::new();
    for (_, pool) in &groups {
        let k = per_label.min(pool.len());
        for j in rand::seq::index::sample(rng, pool.len(), k) {
            demos.push(pool[j]);
        }
    }
    demos.truncate(MAX_DEMO_SET);
    demos.shuffle(rng);
    (demos != p.demos).then(|| Genome { demos, ..p.clone() })
});

single_parent!(DemoOrder, "demo-order", Family::Gene, |p, _ctx, rng| {
    if p.demos.len() < 2 {
        return None;
    }
    let mut child = p.clone();
    let i = rng.gen_range(0..p.demos.len());
    let mut j = rng.gen_range(0..p.demos.len() - 1);
    if j >= i {
        j += 1;
    }
    child.demos.swap(i, j);
    Some(child)
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::operator::genome;
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
            train: Box::leak(Box::new(TrainPool::from_triples(&[
                ("good", "positive", "Review: good\nSentiment: positive"),
                ("bad", "negative", "Review: bad\nSentiment: negative"),
            ]))),
            ..OperatorContext::default()
        }
    }

    /// Six demonstrations, three per label.
    fn labelled() -> OperatorContext<'static> {
        let demos: Vec<(String, String, String)> = (0..6)
            .map(|i| {
                let label = if i % 2 == 0 { "positive" } else { "negative" };
                (
                    format!("r{i}"),
                    label.to_string(),
                    format!("Review: r{i}\nSentiment: {label}"),
                )
            })
            .collect();
        let triples: Vec<(&str, &str, &str)> = demos
            .iter()
            .map(|(i, l, d)| (i.as_str(), l.as_str(), d.as_str()))
            .collect();
        OperatorContext {
            train: Box::leak(Box::new(TrainPool::from_triples(&triples))),
            ..OperatorContext::default()
        }
    }

    #[test]
    fn demo_set_add_and_swap_keep_the_labels_balanced() {
        let g = genome(&["Classify it."]);
        let mut ctx = labelled();
        let count = |g: &Genome, ctx: &OperatorContext<'_>, label: &str| {
            g.demos
                .iter()
                .filter(|&&d| ctx.train.label(d) == Some(label))
                .count()
        };
        for seed in 0..30 {
            let rng = &mut ChaCha8Rng::seed_from_u64(seed);
            let set = DemoSet.apply(&[&g], &mut ctx, rng).unwrap().expect("draws");
            assert!(
                set.demos.len() == 2 || set.demos.len() == 4,
                "{:?}",
                set.demos
            );
            assert_eq!(count(&set, &ctx, "positive"), count(&set, &ctx, "negative"));
            let swapped = DemoSwap
                .apply(&[&set], &mut ctx, rng)
                .unwrap()
                .expect("swaps");
            assert_ne!(swapped.demos, set.demos);
            assert_eq!(
                count(&swapped, &ctx, "positive"),
                count(&set, &ctx, "positive")
            );
            let mut one = g.clone();
            one.demos = vec![0];
            let added = DemoAdd
                .apply(&[&one], &mut ctx, rng)
                .unwrap()
                .expect("adds");
            assert_eq!(
                count(&added, &ctx, "negative"),
                1,
                "the missing label comes first"
            );
            let reordered = DemoOrder
                .apply(&[&added], &mut ctx, rng)
                .unwrap()
                .expect("reorders");
            assert_eq!(reordered.demos, [added.demos[1], added.demos[0]]);
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
        assert_eq!(with.instruction(), "You are a critic. Classify it.");
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
        assert_eq!(on.instruction(), "Classify it. Answer with one word.");
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
        assert_eq!(one.demos, [1], "the train example `bad`");
        assert_eq!(
            one.render(ctx().train),
            "Classify it.\n\nReview: bad\nSentiment: negative"
        );
        let two = apply(&DemoAdd, &one, 3).expect("adds the other");
        assert_eq!(two.demos.len(), 2);
        assert_eq!(apply(&DemoAdd, &two, 3), None, "no fresh demo left");
        let swapped = apply(&DemoSwap, &one, 3).expect("swaps");
        assert_eq!(swapped.demos, [0], "the train example `good`");
        assert_eq!(apply(&DemoSwap, &two, 3), None);
        assert_eq!(apply(&DemoDrop, &one, 3).expect("drops"), g);
        assert_eq!(apply(&DemoDrop, &g, 3), None);
    }
}
