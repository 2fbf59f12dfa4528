//! What a run's log says, computed from `evaluations.jsonl` alone: scores per generation, the best
//! score against evaluations spent, how often each operator helped, the best prompt's lineage, and
//! bootstrap confidence intervals.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::log::EvaluationRecord;

/// Scores of the candidates proposed in one generation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenerationStats {
    /// Generation (0 = initial population).
    pub generation: usize,
    /// Best dev score among its new candidates.
    pub best: f64,
    /// Median dev score among its new candidates.
    pub median: f64,
    /// Worst dev score among its new candidates.
    pub worst: f64,
    /// Best dev score of the run so far.
    pub best_so_far: f64,
}

/// One dev record per candidate: the one scored on the most dev examples (screening and racing
/// log a candidate once per stage), in first-logged order. Validation and train records are
/// left out.
pub(crate) fn latest_per_candidate(records: &[EvaluationRecord]) -> Vec<EvaluationRecord> {
    let mut out: Vec<EvaluationRecord> = Vec::with_capacity(records.len());
    let mut at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for r in records.iter().filter(|r| r.is_dev()) {
        match at.get(&r.id) {
            Some(&i) => {
                if r.n >= out[i].n {
                    out[i] = r.clone();
                }
            }
            None => {
                at.insert(r.id, out.len());
                out.push(r.clone());
            }
        }
    }
    out
}

/// Per generation, the best, median and worst of its new candidates and the best so far.
pub(crate) fn generation_stats(records: &[EvaluationRecord]) -> Vec<GenerationStats> {
    let mut by_gen: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in records {
        by_gen.entry(r.generation).or_default().push(r.accuracy);
    }
    let mut best_so_far = f64::NEG_INFINITY;
    by_gen
        .into_iter()
        .map(|(generation, mut s)| {
            s.sort_by(|a, b| a.total_cmp(b));
            let best = s[s.len() - 1];
            best_so_far = best_so_far.max(best);
            GenerationStats {
                generation,
                best,
                median: s[s.len() / 2],
                worst: s[0],
                best_so_far,
            }
        })
        .collect()
}

/// Where an unfinished run stands: the best candidate scored on the most dev examples any
/// candidate was (the full dev set once one is), ties to the earliest; and the last generation
/// logged.
pub fn best_so_far(records: &[EvaluationRecord]) -> (Option<&EvaluationRecord>, usize) {
    let dev_n = records
        .iter()
        .filter(|r| r.is_dev())
        .map(|r| r.n)
        .max()
        .unwrap_or(0);
    let best = records
        .iter()
        .filter(|r| r.is_dev() && r.n == dev_n)
        .max_by(|a, b| a.score.total_cmp(&b.score).then(b.id.cmp(&a.id)));
    let generation = records.iter().map(|r| r.generation).max().unwrap_or(0);
    (best, generation)
}

/// (example evaluations charged, best full-dev score so far) after each evaluation; partial
/// (raced) scores count toward the budget but not toward the best.
pub fn progress(records: &[EvaluationRecord]) -> Vec<(u64, f64)> {
    let full = records.iter().map(|r| r.n).max().unwrap_or(0);
    let (mut spent, mut best) = (0u64, f64::NEG_INFINITY);
    records
        .iter()
        .map(|r| {
            spent = if r.evals_used > 0 {
                r.evals_used
            } else {
                spent + r.n as u64
            };
            if r.n == full {
                best = best.max(r.accuracy);
            }
            (spent, best)
        })
        .collect()
}

/// How one operator did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OperatorStats {
    /// Operator name.
    pub operator: String,
    /// Children it produced.
    pub applied: usize,
    /// Children that scored strictly above their best parent.
    pub improved: usize,
    /// Mean of (child score - best parent score).
    pub mean_gain: f64,
}

/// Per operator (initial prompts excluded), how often its child beat its best parent.
pub(crate) fn operator_stats(records: &[EvaluationRecord]) -> Vec<OperatorStats> {
    let score: HashMap<u64, f64> = records.iter().map(|r| (r.id, r.accuracy)).collect();
    let mut acc: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.parents.is_empty()) {
        let best_parent = r
            .parents
            .iter()
            .filter_map(|p| score.get(p))
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        if !best_parent.is_finite() {
            continue;
        }
        let e = acc.entry(r.operator.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(r.accuracy > best_parent);
        e.2 += r.accuracy - best_parent;
    }
    acc.into_iter()
        .map(|(operator, (applied, improved, gain))| OperatorStats {
            operator,
            applied,
            improved,
            mean_gain: gain / applied as f64,
        })
        .collect()
}

/// How one move family of the adaptive strategy did in one generation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FamilyStats {
    /// Generation its children were proposed in (0: the initial population's, drawn by
    /// operator weight before any credit).
    pub generation: usize,
    /// Family name (`demos`, `reflect`, `edits`, `crossover`).
    pub family: String,
    /// Its children that were scored.
    pub children: usize,
    /// Its share of the generation's children made by any family.
    pub share: f64,
    /// Dev example evaluations its children were charged.
    pub dev_evals: u64,
    /// Children compared with a fully scored parent (the credit the bandit sees).
    pub credited: usize,
    /// Of those, the children whose paired dev gain over that parent is above 0.
    pub wins: usize,
    /// Mean paired dev gain (fitness) of the credited children (0 when none).
    pub mean_gain: f64,
}

/// Each candidate's dev results, gathered from all its dev records (screening, racing rungs,
/// the rest of dev).
fn dev_results_by_candidate(records: &[EvaluationRecord]) -> HashMap<u64, crate::evolve::Results> {
    let mut dev: HashMap<u64, crate::evolve::Results> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.pool == crate::evolve::Pool::Dev)
    {
        dev.entry(r.id).or_default().extend(r.results.clone());
    }
    dev
}

/// How `fewshot-gepa` ordered its stages, from the log: its probe (generation 1's reflections
/// of the initial prompts) against its first population (generation 0), the verdict and the
/// generation the second stage started in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageOrder {
    /// Reflections the probe scored on the full dev set.
    pub probe_children: usize,
    /// The probe's best reflection: id and dev fitness.
    pub challenger: (u64, f64),
    /// The best of generation 0: id and dev fitness.
    pub incumbent: (u64, f64),
    /// The paired evidence on dev, challenger against incumbent.
    pub evidence: crate::evolve::choice::PairedEvidence,
    /// Whether reflection ran first (else demonstrations did).
    pub reflection_first: bool,
    /// The first generation after the probe whose children are the second stage's (None: the
    /// budget ended first).
    pub second_stage_from: Option<usize>,
}

/// `fewshot-gepa`'s stage order (see [`StageOrder`]); None when no probe ran (no model to write
/// reflections, or the budget ended first). Uses the strategy's own verdict function, so the
/// report says what the search decided.
pub(crate) fn stage_order(records: &[EvaluationRecord], dev_n: usize) -> Option<StageOrder> {
    use crate::evolve::strategies::staged::{best_of, probe_verdict};
    use crate::evolve::strategies::MoveFamily;
    let dev = dev_results_by_candidate(records);
    let latest = latest_per_candidate(records);
    let full_of = |generation: usize, reflect: bool| {
        latest
            .iter()
            .filter(|r| r.generation == generation)
            .filter(|r| {
                (MoveFamily::of_operator(&r.operator) == Some(MoveFamily::Reflect)) == reflect
            })
            .filter_map(|r| {
                dev.get(&r.id)
                    .filter(|d| d.len() >= dev_n)
                    .map(|d| (r.id, d.mean_fitness()))
            })
            .collect::<Vec<_>>()
    };
    let probe = full_of(1, true);
    let first = full_of(0, false);
    let challenger = best_of(probe.iter().copied())?;
    let incumbent = best_of(first.iter().copied())?;
    let (evidence, reflection_first) = probe_verdict(&dev[&challenger.0], &dev[&incumbent.0]);
    let second = if reflection_first {
        MoveFamily::Demos
    } else {
        MoveFamily::Reflect
    };
    let second_stage_from = latest
        .iter()
        .filter(|r| r.generation >= 2 && MoveFamily::of_operator(&r.operator) == Some(second))
        .map(|r| r.generation)
        .min();
    Some(StageOrder {
        probe_children: probe.len(),
        challenger,
        incumbent,
        evidence,
        reflection_first,
        second_stage_from,
    })
}

/// The adaptive strategy's allocation, from the log: per generation and family, children,
/// share, dev evaluations and wins.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MoveFamilies {
    /// One row per (generation, family) with children, by generation then family.
    pub rows: Vec<FamilyStats>,
    /// Train-pool example evaluations (the probes error-driven demonstrations and reflection
    /// read failures from), which the log does not attribute to a family.
    pub train_probe_evals: u64,
}

/// Per generation and move family (children whose operator has no family, and initial
/// prompts, are left out), the children and their credit: each child's paired dev gain over
/// its best fully scored parent on the dev examples both were scored on, as paired screening
/// and the adaptive strategy compute it. `dev_n` is a full dev evaluation's size. Computed from
/// the log alone, so a resumed run's report is the same as an uninterrupted one's.
pub(crate) fn move_families(records: &[EvaluationRecord], dev_n: usize) -> MoveFamilies {
    use crate::evolve::strategies::MoveFamily;
    use crate::evolve::Results;
    let dev = dev_results_by_candidate(records);
    let train_probe_evals: u64 = records
        .iter()
        .filter(|r| r.pool == crate::evolve::Pool::Train)
        .map(|r| r.results.len() as u64)
        .sum();
    let most = dev.values().map(Results::len).max().unwrap_or(0);
    let full = dev_n.min(most).max(1);
    // Per (generation, family); mean_gain holds the summed gain until the end.
    let mut acc: BTreeMap<(usize, MoveFamily), FamilyStats> = BTreeMap::new();
    for r in latest_per_candidate(records) {
        let Some(family) = MoveFamily::of_operator(&r.operator) else {
            continue;
        };
        let Some(child) = dev.get(&r.id) else {
            continue;
        };
        let parents = r
            .parents
            .iter()
            .filter_map(|p| dev.get(p).map(|res| (*p, res)));
        let gain = crate::evolve::admission::comparison_parent(parents, full)
            .and_then(|(_, parent)| child.paired_gain(parent));
        let e = acc
            .entry((r.generation, family))
            .or_insert_with(|| FamilyStats {
                generation: r.generation,
                family: family.name().to_string(),
                children: 0,
                share: 0.0,
                dev_evals: 0,
                credited: 0,
                wins: 0,
                mean_gain: 0.0,
            });
        e.children += 1;
        e.dev_evals += child.len() as u64;
        if let Some(g) = gain {
            e.credited += 1;
            e.wins += usize::from(g > 0.0);
            e.mean_gain += g;
        }
    }
    let mut per_generation: BTreeMap<usize, usize> = BTreeMap::new();
    for e in acc.values() {
        *per_generation.entry(e.generation).or_default() += e.children;
    }
    let rows = acc
        .into_values()
        .map(|mut e| {
            e.share = e.children as f64 / per_generation[&e.generation] as f64;
            e.mean_gain /= e.credited.max(1) as f64;
            e
        })
        .collect();
    MoveFamilies {
        rows,
        train_probe_evals,
    }
}

/// One step of a lineage.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LineageStep {
    /// Candidate id.
    pub id: u64,
    /// Operator that made it.
    pub operator: String,
    /// Its dev score.
    pub score: f64,
    /// Its score minus its best parent's (0 for an initial prompt).
    pub change: f64,
    /// The prompt.
    pub prompt: String,
}

/// The ancestors of `id`, oldest first, following the best-scoring parent at each step.
pub fn lineage(records: &[EvaluationRecord], id: u64) -> Vec<LineageStep> {
    let by_id: HashMap<u64, &EvaluationRecord> = records.iter().map(|r| (r.id, r)).collect();
    let mut chain = Vec::new();
    let mut cur = by_id.get(&id).copied();
    while let Some(r) = cur {
        let parent = r
            .parents
            .iter()
            .filter_map(|p| by_id.get(p).copied())
            .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy).then(b.id.cmp(&a.id)));
        chain.push(LineageStep {
            id: r.id,
            operator: r.operator.clone(),
            score: r.accuracy,
            change: parent.map_or(0.0, |p| r.accuracy - p.accuracy),
            prompt: r.prompt.clone(),
        });
        // Parents always have smaller ids, so this ends.
        cur = parent.filter(|p| p.id < r.id);
    }
    chain.reverse();
    chain
}

/// Is dev large enough to tell the candidates apart? The best candidate's dev sampling noise
/// beside the spread of the fully scored candidates' dev accuracies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Headroom {
    /// Fully scored candidates.
    pub candidates: usize,
    /// Best dev accuracy.
    pub best: f64,
    /// Median dev accuracy.
    pub median: f64,
    /// Binomial standard error of the best's dev accuracy, sqrt(p (1 - p) / n).
    pub best_dev_se: f64,
    /// Standard deviation of the candidates' dev accuracies.
    pub spread_sd: f64,
    /// A plain warning when dev noise is as large as the differences it is asked to judge.
    pub warning: Option<String>,
}

/// The headroom of a run from its per-candidate dev records (None with fewer than two fully
/// scored candidates).
pub(crate) fn headroom(records: &[EvaluationRecord], dev_n: usize) -> Option<Headroom> {
    let mut acc: Vec<f64> = records
        .iter()
        .filter(|r| r.is_dev() && r.n >= dev_n && dev_n > 0)
        .map(|r| r.accuracy)
        .collect();
    if acc.len() < 2 {
        return None;
    }
    acc.sort_by(|a, b| a.total_cmp(b));
    let spread_sd = crate::stats::std_dev(&acc);
    let best = acc[acc.len() - 1];
    let median = acc[acc.len() / 2];
    let best_dev_se = (best * (1.0 - best) / dev_n as f64).sqrt();
    let gap = best - median;
    let warning = (gap < 2.0 * best_dev_se).then(|| {
        format!(
            "the best candidate is {:.1} pts above the median, less than two standard errors of one dev score ({:.1} pts): dev ({dev_n} examples) is too small to tell these candidates apart, so the best on dev is largely luck; raise --dev-limit, and trust the validation and test columns over dev",
            100.0 * gap,
            200.0 * best_dev_se
        )
    });
    Some(Headroom {
        candidates: acc.len(),
        best,
        median,
        best_dev_se,
        spread_sd,
        warning,
    })
}

pub use crate::stats::{bootstrap_ci, RESAMPLES as BOOTSTRAP_RESAMPLES};

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        id: u64,
        generation: usize,
        parents: &[u64],
        operator: &str,
        score: f64,
    ) -> EvaluationRecord {
        EvaluationRecord {
            id,
            generation,
            parents: parents.to_vec(),
            operator: operator.into(),
            prompt: format!("p{id}"),
            pool: crate::evolve::results::Pool::Dev,
            score,
            accuracy: score,
            macro_f1: score,
            n: 10,
            results: Vec::new(),
            forward_passes: 10,
            seconds: 0.1,
            evals_used: 0,
        }
    }

    fn log() -> Vec<EvaluationRecord> {
        vec![
            rec(0, 0, &[], "initial", 0.5),
            rec(1, 0, &[], "initial", 0.7),
            rec(2, 1, &[1], "delete", 0.8),
            rec(3, 1, &[0, 1], "crossover", 0.6),
            rec(4, 2, &[2], "insert", 0.9),
            rec(5, 2, &[2], "delete", 0.7),
        ]
    }

    #[test]
    fn per_generation_and_progress() {
        let g = generation_stats(&log());
        assert_eq!(g.len(), 3);
        assert_eq!((g[1].best, g[1].worst, g[1].best_so_far), (0.8, 0.6, 0.8));
        let p = progress(&log());
        assert_eq!(p[1], (20, 0.7));
        assert_eq!(p[5], (60, 0.9));
    }

    #[test]
    fn operators_are_credited_against_their_best_parent() {
        let ops = operator_stats(&log());
        let delete = ops.iter().find(|o| o.operator == "delete").unwrap();
        assert_eq!((delete.applied, delete.improved), (2, 1));
        assert!((delete.mean_gain - 0.0).abs() < 1e-12); // +0.1 and -0.1
        let cross = ops.iter().find(|o| o.operator == "crossover").unwrap();
        assert_eq!((cross.applied, cross.improved), (1, 0));
        assert!(ops.iter().all(|o| o.operator != "initial"));
    }

    /// A record of `id` scored on these (example, fitness) pairs of `pool`.
    fn scored(
        id: u64,
        parents: &[u64],
        operator: &str,
        pool: crate::evolve::Pool,
        on: &[(usize, f64)],
    ) -> EvaluationRecord {
        EvaluationRecord {
            pool,
            n: on.len(),
            results: on
                .iter()
                .map(|&(example, fitness)| crate::evolve::ExampleResult {
                    example,
                    fitness,
                    metric: fitness,
                    predicted: String::new(),
                })
                .collect(),
            ..rec(id, usize::from(!parents.is_empty()), parents, operator, 0.0)
        }
    }

    #[test]
    fn stage_order_reads_the_probe_against_generation_0_as_the_strategy_decides() {
        use crate::evolve::Pool;
        // 12 dev examples; `right` of them scored 1.
        let at = |id: u64, generation: usize, parents: &[u64], operator: &str, right: &[usize]| {
            let on: Vec<(usize, f64)> = (0..12)
                .map(|e| (e, f64::from(u8::from(right.contains(&e)))))
                .collect();
            EvaluationRecord {
                generation,
                ..scored(id, parents, operator, Pool::Dev, &on)
            }
        };
        let log = |probe_right: &[usize]| {
            vec![
                at(0, 0, &[], "initial", &[0]),
                at(1, 0, &[0], "demo-add", &[0, 1]),
                at(2, 1, &[0], "gepa-reflect", probe_right),
                at(3, 1, &[0], "gepa-reflect", &[0]),
                at(4, 2, &[2], "gepa-reflect", &[0]),
                at(5, 3, &[2], "demo-add", &[0]),
            ]
        };
        // Six better, none worse than #1 (the best of generation 0): p = 1/64, reflection
        // first, demonstrations from generation 3.
        let o = stage_order(&log(&[0, 1, 2, 3, 4, 5, 6, 7]), 12).expect("a probe");
        assert_eq!(o.probe_children, 2);
        assert_eq!((o.challenger.0, o.incumbent.0), (2, 1));
        assert!((o.challenger.1 - 8.0 / 12.0).abs() < 1e-12);
        assert_eq!((o.evidence.better, o.evidence.worse), (6, 0));
        assert!(o.reflection_first);
        assert_eq!(o.second_stage_from, Some(3));
        // Two better: p = 0.25, demonstrations first, reflection from generation 2.
        let o = stage_order(&log(&[0, 1, 2, 3]), 12).expect("a probe");
        assert_eq!((o.evidence.better, o.evidence.worse), (2, 0));
        assert!(!o.reflection_first);
        assert_eq!(o.second_stage_from, Some(2));
        // No reflection in generation 1 (no model to write them): no probe.
        let mut no_probe = log(&[0]);
        no_probe.retain(|r| r.operator != "gepa-reflect");
        assert_eq!(stage_order(&no_probe, 12), None);
    }

    #[test]
    fn move_families_credit_paired_gains_over_the_best_full_parent_from_the_log() {
        use crate::evolve::Pool;
        let log = vec![
            scored(
                0,
                &[],
                "initial",
                Pool::Dev,
                &[(0, 1.0), (1, 0.0), (2, 0.0), (3, 1.0)],
            ),
            scored(
                1,
                &[],
                "initial",
                Pool::Dev,
                &[(0, 0.0), (1, 0.0), (2, 1.0), (3, 1.0)],
            ),
            scored(
                0,
                &[],
                "initial",
                Pool::Train,
                &[(0, 0.0), (1, 1.0), (2, 0.0)],
            ),
            // Screened on examples 0 and 1 (+0.5 over #0), then the rest of dev: +0.25.
            scored(2, &[0], "demo-error", Pool::Dev, &[(0, 1.0), (1, 1.0)]),
            scored(2, &[0], "demo-error", Pool::Dev, &[(2, 0.0), (3, 1.0)]),
            // Parents tie at 0.5: compared with the later one, #1, on examples 0 and 1: 0.
            scored(3, &[0, 1], "uniform", Pool::Dev, &[(0, 0.0), (1, 0.0)]),
            // No family: left out.
            scored(4, &[1], "opro", Pool::Dev, &[(0, 1.0), (1, 1.0)]),
        ];
        let m = move_families(&log, 4);
        assert_eq!(m.train_probe_evals, 3);
        assert_eq!(m.rows.len(), 2, "{m:?}");
        let (demos, cross) = (&m.rows[0], &m.rows[1]);
        assert_eq!((demos.family.as_str(), demos.generation), ("demos", 1));
        assert_eq!(
            (demos.children, demos.dev_evals, demos.credited, demos.wins),
            (1, 4, 1, 1)
        );
        assert!((demos.mean_gain - 0.25).abs() < 1e-12);
        assert_eq!(demos.share, 0.5);
        assert_eq!(cross.family, "crossover");
        assert_eq!(
            (cross.children, cross.dev_evals, cross.credited, cross.wins),
            (1, 2, 1, 0)
        );
        assert_eq!(cross.mean_gain, 0.0);
    }

    #[test]
    fn lineage_follows_the_best_parent_back_to_an_initial_prompt() {
        let chain = lineage(&log(), 4);
        assert_eq!(
            chain.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert!((chain[2].change - 0.1).abs() < 1e-12);
        assert_eq!(chain[0].operator, "initial");
    }

    #[test]
    fn headroom_warns_when_candidates_differ_by_less_than_dev_noise() {
        let h = headroom(&log(), 10).unwrap();
        assert_eq!(h.candidates, 6);
        assert!((h.best_dev_se - (0.9f64 * 0.1 / 10.0).sqrt()).abs() < 1e-12);
        // 0.9 vs a median of 0.7 with n = 10: SE 0.095, gap 0.2 > 0.19: no warning.
        assert!(h.warning.is_none(), "{h:?}");
        let close: Vec<EvaluationRecord> = (0..6)
            .map(|i| rec(i, 0, &[], "initial", 0.80 + 0.01 * i as f64))
            .collect();
        assert!(headroom(&close, 10).unwrap().warning.is_some());
        assert!(headroom(&close[..1], 10).is_none());
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_narrows_with_n() {
        let small: Vec<f64> = (0..20).map(|i| f64::from(i % 2 == 0)).collect();
        let large: Vec<f64> = (0..2000).map(|i| f64::from(i % 2 == 0)).collect();
        let (a, b) = bootstrap_ci(&small, 1);
        let (c, d) = bootstrap_ci(&large, 1);
        assert!(a < 0.5 && 0.5 < b && c < 0.5 && 0.5 < d);
        assert!(d - c < b - a);
        assert_eq!(
            bootstrap_ci(&small, 1),
            (a, b),
            "seeded: the same interval every time"
        );
    }
}
