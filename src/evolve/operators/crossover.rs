//! Crossover of two genomes: one-point and uniform at phrase level, one-point at sentence level.
//! Genes other than phrases (persona, constraint, demos) come from the first parent, except in
//! uniform crossover, where each is taken from either parent with equal chance.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::operator::{Family, Operator, OperatorContext};
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;

/// One-point crossover: child = parent1[..i] ++ parent2[j..], with 1 <= i <= len1 and
/// 0 <= j < len2, so the child takes at least one phrase from each parent; the cut
/// pair is drawn uniformly among those whose child differs from both parents.
/// Identical parents give None.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnePointCrossover;

impl Operator for OnePointCrossover {
    fn name(&self) -> &'static str {
        "one-point"
    }

    fn family(&self) -> Family {
        Family::Crossover
    }

    fn arity(&self) -> usize {
        2
    }

    fn apply(
        &self,
        parents: &[&Genome],
        _ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let [pa, pb, ..] = parents else {
            return Ok(None);
        };
        Ok(
            one_point(&pa.phrases, &pb.phrases, rng).map(|phrases| Genome {
                phrases: phrases.concat(),
                ..(*pa).clone()
            }),
        )
    }
}

/// One-point crossover of two sequences of units; the child (as units) differs from both.
fn one_point<T: Clone + PartialEq>(a: &[T], b: &[T], rng: &mut ChaCha8Rng) -> Option<Vec<T>> {
    if a == b {
        // Crossing a genome with itself would only duplicate or drop units.
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
    let mut units = a[..i].to_vec();
    units.extend_from_slice(&b[j..]);
    Some(units)
}

/// Trait to flatten units (phrases or sentences) back into phrases.
trait Concat {
    fn concat(self) -> Vec<String>;
}

impl Concat for Vec<String> {
    fn concat(self) -> Vec<String> {
        self
    }
}

impl Concat for Vec<Vec<String>> {
    fn concat(self) -> Vec<String> {
        self.into_iter().flatten().collect()
    }
}

/// Uniform crossover: the child has the longer parent's number of phrase slots; slot i takes
/// parent 1's or parent 2's phrase i with equal chance (the other's when one is shorter), and
/// each other gene comes from either parent. Drawn again (up to 20 times) until the child
/// differs from both parents.
#[derive(Clone, Copy, Debug, Default)]
pub struct UniformCrossover;

impl Operator for UniformCrossover {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn family(&self) -> Family {
        Family::Crossover
    }

    fn arity(&self) -> usize {
        2
    }

    fn apply(
        &self,
        parents: &[&Genome],
        _ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let [a, b, ..] = parents else {
            return Ok(None);
        };
        if a == b {
            return Ok(None);
        }
        for _ in 0..20 {
            let n = a.len().max(b.len());
            let mut phrases = Vec::with_capacity(n);
            for i in 0..n {
                let pick = match (a.phrases.get(i), b.phrases.get(i)) {
                    (Some(x), Some(y)) => Some(if rng.gen_bool(0.5) { x } else { y }),
                    (Some(x), None) | (None, Some(x)) => rng.gen_bool(0.5).then_some(x),
                    (None, None) => None,
                };
                phrases.extend(pick.cloned());
            }
            let child = Genome {
                phrases,
                persona: if rng.gen_bool(0.5) {
                    &a.persona
                } else {
                    &b.persona
                }
                .clone(),
                constraint: if rng.gen_bool(0.5) {
                    &a.constraint
                } else {
                    &b.constraint
                }
                .clone(),
                demos: if rng.gen_bool(0.5) {
                    &a.demos
                } else {
                    &b.demos
                }
                .clone(),
            };
            if !child.is_empty() && child != **a && child != **b {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }
}

/// One-point crossover at sentence level: phrases are grouped into sentences (ending in `.`,
/// `?` or `!`), and the child joins the first sentences of parent 1 with the last of parent 2.
/// Needs at least one multi-sentence parent.
#[derive(Clone, Copy, Debug, Default)]
pub struct SentenceCrossover;

/// Groups phrases into sentences.
pub fn sentences(phrases: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current = Vec::new();
    for p in phrases {
        current.push(p.clone());
        let end = p.trim_end_matches(['"', '\'', ')', ']', '\u{201D}']);
        if end.ends_with(['.', '?', '!']) {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl Operator for SentenceCrossover {
    fn name(&self) -> &'static str {
        "sentence"
    }

    fn family(&self) -> Family {
        Family::Crossover
    }

    fn arity(&self) -> usize {
        2
    }

    fn apply(
        &self,
        parents: &[&Genome],
        _ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let [pa, pb, ..] = parents else {
            return Ok(None);
        };
        let (a, b) = (sentences(&pa.phrases), sentences(&pb.phrases));
        if a.len() < 2 && b.len() < 2 {
            return Ok(None);
        }
        Ok(one_point(&a, &b, rng).map(|units| Genome {
            phrases: units.concat(),
            ..(*pa).clone()
        }))
    }
}

/// True when `target == head ++ tail`, without building the concatenation.
fn equals_concat<T: PartialEq>(target: &[T], head: &[T], tail: &[T]) -> bool {
    target.len() == head.len() + tail.len()
        && target[..head.len()] == *head
        && target[head.len()..] == *tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::operator::{genome, run_op};
    use crate::evolve::pool::PhrasePool;
    use rand::SeedableRng;

    #[test]
    fn uniform_mixes_phrases_slot_by_slot() {
        let p1 = genome(&["A.", "B,", "C."]);
        let p2 = genome(&["X,", "Y."]);
        let pool = PhrasePool::default();
        let child = run_op(
            &UniformCrossover,
            &[&p1, &p2],
            &pool,
            &mut ChaCha8Rng::seed_from_u64(7),
        )
        .expect("applies");
        assert_eq!(child, genome(&["A.", "B,"]));
        for seed in 0..30 {
            let c = run_op(
                &UniformCrossover,
                &[&p1, &p2],
                &pool,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .expect("applies");
            assert!(c != p1 && c != p2 && !c.is_empty());
            for (i, ph) in c.phrases.iter().enumerate() {
                assert!(
                    p1.phrases.get(i) == Some(ph) || p2.phrases.get(i) == Some(ph) || c.len() < 3
                );
            }
        }
        assert_eq!(
            run_op(
                &UniformCrossover,
                &[&p1, &p1],
                &pool,
                &mut ChaCha8Rng::seed_from_u64(1)
            ),
            None
        );
    }

    #[test]
    fn sentence_crossover_keeps_sentences_whole() {
        let p1 = genome(&["Given a review,", "classify it.", "Be brief."]);
        let p2 = genome(&["You are a critic.", "Read it,", "then answer."]);
        assert_eq!(
            sentences(&p1.phrases),
            [
                vec!["Given a review,".to_string(), "classify it.".to_string()],
                vec!["Be brief.".to_string()]
            ]
        );
        let pool = PhrasePool::default();
        let child = run_op(
            &SentenceCrossover,
            &[&p1, &p2],
            &pool,
            &mut ChaCha8Rng::seed_from_u64(3),
        )
        .expect("applies");
        assert_eq!(
            child,
            genome(&[
                "Given a review,",
                "classify it.",
                "Be brief.",
                "You are a critic.",
                "Read it,",
                "then answer."
            ])
        );
        // Cuts fall between sentences only: "Given a review," never ends up without "classify it."
        for seed in 0..30 {
            let c = run_op(
                &SentenceCrossover,
                &[&p1, &p2],
                &pool,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .expect("applies");
            for s in sentences(&c.phrases) {
                assert!(
                    sentences(&p1.phrases).contains(&s) || sentences(&p2.phrases).contains(&s),
                    "{s:?}"
                );
            }
        }
        let single = genome(&["One sentence only."]);
        assert_eq!(
            run_op(
                &SentenceCrossover,
                &[&single, &single],
                &pool,
                &mut ChaCha8Rng::seed_from_u64(3)
            ),
            None
        );
    }

    #[test]
    fn crossover_joins_a_head_and_a_tail() {
        let p1 = genome(&["A.", "B,", "C."]);
        let p2 = genome(&["X,", "Y.", "Z!"]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let child = run_op(
            &OnePointCrossover,
            &[&p1, &p2],
            &PhrasePool::default(),
            &mut rng,
        )
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
            let child = run_op(
                &OnePointCrossover,
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
            run_op(&OnePointCrossover, &[&same, &same], &pool, &mut rng),
            None
        );
        let one = genome(&["A."]);
        assert_eq!(
            run_op(&OnePointCrossover, &[&one, &one], &pool, &mut rng),
            None
        );
        assert_eq!(
            run_op(&OnePointCrossover, &[&one, &genome(&[])], &pool, &mut rng),
            None
        );
        assert_eq!(run_op(&OnePointCrossover, &[&one], &pool, &mut rng), None);
    }
}
