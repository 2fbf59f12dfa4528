//! Single-parent edit operators (GrIPS): delete, swap, add a phrase from the pool, and
//! paraphrase a phrase with the model.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::model::{ask_for_text, PARAPHRASE_SYSTEM};
use super::operator::{Family, Operator, OperatorContext};
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;

/// Removes one random phrase; never leaves an empty genome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delete;

/// Exchanges two random phrases that differ.
#[derive(Clone, Copy, Debug, Default)]
pub struct Swap;

/// Inserts a random pool phrase that the genome lacks, at a random position.
#[derive(Clone, Copy, Debug, Default)]
pub struct Insert;

single_parent!(Delete, "delete", Family::Edit, |parent, _ctx, rng| {
    if parent.len() < 2 {
        return None;
    }
    let mut child = parent.clone();
    child.phrases.remove(rng.gen_range(0..child.len()));
    Some(child)
});

single_parent!(Swap, "swap", Family::Edit, |parent, _ctx, rng| {
    let p = &parent.phrases;
    // Only pairs of different phrases change the genome.
    let pairs: Vec<(usize, usize)> = (0..p.len())
        .flat_map(|i| (i + 1..p.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| p[i] != p[j])
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let (i, j) = pairs[rng.gen_range(0..pairs.len())];
    let mut child = parent.clone();
    child.phrases.swap(i, j);
    Some(child)
});

single_parent!(Insert, "insert", Family::Edit, |parent, ctx, rng| {
    let fresh: Vec<&String> = ctx
        .pool
        .phrases
        .iter()
        .filter(|phrase| !parent.phrases.contains(phrase))
        .collect();
    if fresh.is_empty() {
        return None;
    }
    let phrase = fresh[rng.gen_range(0..fresh.len())].clone();
    let mut child = parent.clone();
    child.phrases.insert(rng.gen_range(0..=child.len()), phrase);
    Some(child)
});

/// Rewrites one random phrase in other words, asked of the model (GrIPS's paraphrase edit).
#[derive(Clone, Copy, Debug, Default)]
pub struct Paraphrase;

impl Operator for Paraphrase {
    fn name(&self) -> &'static str {
        "paraphrase"
    }

    fn family(&self) -> Family {
        Family::Edit
    }

    fn arity(&self) -> usize {
        1
    }

    fn needs_model(&self) -> bool {
        true
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
        if parent.is_empty() {
            return Ok(None);
        }
        let i = rng.gen_range(0..parent.len());
        let user = format!(
            "Paraphrase this sentence, keeping its meaning:\n{}",
            parent.phrases[i]
        );
        let Some(text) = ask_for_text(ctx, PARAPHRASE_SYSTEM, user, rng)? else {
            return Ok(None);
        };
        if text == parent.phrases[i] {
            return Ok(None);
        }
        let mut child = (*parent).clone();
        child.phrases[i] = text;
        Ok(Some(child))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::operator::{genome, run_op};
    use crate::evolve::pool::PhrasePool;
    use rand::SeedableRng;

    fn abcd() -> Genome {
        genome(&["A.", "B,", "C.", "D?"])
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn delete_removes_one_phrase() {
        let parent = abcd();
        let child =
            run_op(&Delete, &[&parent], &PhrasePool::default(), &mut rng()).expect("applies");
        assert_eq!(child, genome(&["A.", "B,", "D?"]));
        assert_ne!(child, parent);
    }

    #[test]
    fn delete_never_empties_a_genome() {
        let pool = PhrasePool::default();
        assert_eq!(
            run_op(&Delete, &[&genome(&["Only."])], &pool, &mut rng()),
            None
        );
        assert_eq!(run_op(&Delete, &[&genome(&[])], &pool, &mut rng()), None);
        assert_eq!(run_op(&Delete, &[], &pool, &mut rng()), None);
    }

    #[test]
    fn swap_exchanges_two_different_phrases() {
        let parent = abcd();
        let child = run_op(&Swap, &[&parent], &PhrasePool::default(), &mut rng()).expect("applies");
        assert_eq!(child, genome(&["C.", "B,", "A.", "D?"]));
        assert_ne!(child, parent);
    }

    #[test]
    fn swap_returns_none_when_nothing_can_change() {
        let pool = PhrasePool::default();
        assert_eq!(
            run_op(&Swap, &[&genome(&["Only."])], &pool, &mut rng()),
            None
        );
        assert_eq!(
            run_op(&Swap, &[&genome(&["Same.", "Same."])], &pool, &mut rng()),
            None
        );
        // With a repeated phrase, the only useful swaps move the odd one.
        let parent = genome(&["X.", "X.", "Y."]);
        for seed in 0..20 {
            let child = run_op(
                &Swap,
                &[&parent],
                &pool,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .expect("applies");
            assert_ne!(child, parent);
        }
    }

    #[test]
    fn insert_adds_a_fresh_pool_phrase() {
        let parent = abcd();
        let pool = PhrasePool::new(["A.", "Be careful.", "Think step by step."]);
        let child = run_op(&Insert, &[&parent], &pool, &mut rng()).expect("applies");
        assert_eq!(child, genome(&["A.", "B,", "C.", "Be careful.", "D?"]));
        assert_ne!(child, parent);
    }

    #[test]
    fn insert_returns_none_without_fresh_phrases() {
        let parent = abcd();
        assert_eq!(
            run_op(&Insert, &[&parent], &PhrasePool::default(), &mut rng()),
            None
        );
        let pool = PhrasePool::new(["A.", "D?"]);
        assert_eq!(run_op(&Insert, &[&parent], &pool, &mut rng()), None);
    }

    #[test]
    fn insert_into_empty_genome() {
        let pool = PhrasePool::new(["Be careful."]);
        let child = run_op(&Insert, &[&genome(&[])], &pool, &mut rng()).expect("applies");
        assert_eq!(child, genome(&["Be careful."]));
    }
}
