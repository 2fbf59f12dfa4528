//! One-point crossover of two genomes.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Operator;
use crate::evolve::genome::Genome;
use crate::evolve::pool::PhrasePool;

/// One-point crossover: child = parent1[..i] ++ parent2[j..], with 1 <= i <= len1 and
/// 0 <= j < len2, so the child takes at least one phrase from each parent; the cut
/// pair is drawn uniformly among those whose child differs from both parents.
/// Identical parents give None.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnePointCrossover;

impl Operator for OnePointCrossover {
    fn name(&self) -> &'static str {
        "crossover"
    }

    fn arity(&self) -> usize {
        2
    }

    fn apply(
        &self,
        parents: &[&Genome],
        _pool: &PhrasePool,
        rng: &mut ChaCha8Rng,
    ) -> Option<Genome> {
        let (a, b) = match parents {
            [a, b, ..] => (&a.phrases, &b.phrases),
            _ => return None,
        };
        if a == b {
            // Crossing a genome with itself would only duplicate or drop phrases.
            return None;
        }
        let cuts: Vec<(usize, usize)> = (1..=a.len())
            .flat_map(|i| (0..b.len()).map(move |j| (i, j)))
            .filter(|&(i, j)| {
                !equals_concat(a, &a[..i], &b[j..]) && !equals_concat(b, &a[..i], &b[j..])
            })
            .collect();
        if cuts.is_empty() {
            return None;
        }
        let (i, j) = cuts[rng.gen_range(0..cuts.len())];
        let mut phrases = a[..i].to_vec();
        phrases.extend_from_slice(&b[j..]);
        Some(Genome { phrases })
    }
}

/// True when `target == head ++ tail`, without building the concatenation.
fn equals_concat(target: &[String], head: &[String], tail: &[String]) -> bool {
    target.len() == head.len() + tail.len()
        && target[..head.len()] == *head
        && target[head.len()..] == *tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn genome(phrases: &[&str]) -> Genome {
        Genome {
            phrases: phrases.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn crossover_joins_a_head_and_a_tail() {
        let p1 = genome(&["A.", "B,", "C."]);
        let p2 = genome(&["X,", "Y.", "Z!"]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let child = OnePointCrossover
            .apply(&[&p1, &p2], &PhrasePool::default(), &mut rng)
            .expect("applies");
        assert_eq!(child, genome(&["A.", "Y.", "Z!"]));
        assert_ne!(child, p1);
        assert_ne!(child, p2);
    }

    #[test]
    fn crossover_children_always_differ_from_both_parents() {
        let p1 = genome(&["A.", "B."]);
        let p2 = genome(&["A.", "C."]);
        for seed in 0..30 {
            let child = OnePointCrossover
                .apply(
                    &[&p1, &p2],
                    &PhrasePool::default(),
                    &mut ChaCha8Rng::seed_from_u64(seed),
                )
                .expect("applies");
            assert!(!child.is_empty());
            assert_ne!(child, p1);
            assert_ne!(child, p2);
        }
    }

    #[test]
    fn crossover_returns_none_when_it_cannot_make_anything_new() {
        let pool = PhrasePool::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let same = genome(&["A.", "B."]);
        assert_eq!(
            OnePointCrossover.apply(&[&same, &same], &pool, &mut rng),
            None
        );
        let one = genome(&["A."]);
        assert_eq!(
            OnePointCrossover.apply(&[&one, &one], &pool, &mut rng),
            None
        );
        assert_eq!(
            OnePointCrossover.apply(&[&one, &genome(&[])], &pool, &mut rng),
            None
        );
        assert_eq!(OnePointCrossover.apply(&[&one], &pool, &mut rng), None);
    }
}
