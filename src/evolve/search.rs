//! What every strategy shares: candidate ids and lineage, duplicate detection, the budget in
//! example forward passes (counted the same for every strategy), racing, patience and the best
//! prompt so far. Strategies decide *which* candidates to make; the [`Search`] decides whether
//! and how far they are scored.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::EvolveError;
use super::genome::Genome;
use super::operators::{Operator, OperatorContext, WeightedOperator};
use super::strategies::SearchConfig;

/// How many attempt units one population slot gets before it is given up; an attempt with an
/// edit or crossover costs 1, one that asks the model costs [`MODEL_ATTEMPT_COST`].
pub const MAX_ATTEMPTS_PER_SLOT: usize = 50;

/// Attempt units a model-driven attempt costs (so a slot asks the model at most 5 times).
pub const MODEL_ATTEMPT_COST: usize = 10;

/// Operator name recorded on the user's own prompts.
pub const INITIAL_OPERATOR: &str = "initial";

/// A candidate prompt proposed by a strategy, with its lineage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Sequential id in proposal order, starting at 0 for the first initial prompt.
    pub id: u64,
    /// Ids of the parents (empty for initial prompts).
    pub parents: Vec<u64>,
    /// Name of the operator that made it, or "initial".
    pub operator: String,
    /// The prompt as genes.
    pub genome: Genome,
    /// Generation in which it was proposed (0 = initial population).
    pub generation: usize,
}

impl Candidate {
    /// The prompt text sent to the model.
    pub fn prompt(&self) -> String {
        self.genome.render()
    }
}

/// A candidate with its fitness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The candidate.
    pub candidate: Candidate,
    /// Its fitness (dev score); higher is better.
    pub score: f64,
    /// Whether the score is on the full dev set (false: stopped early by racing or the budget).
    pub full: bool,
}

/// Scores candidates. Implemented outside this module (by the model-backed run evaluator);
/// tests implement cheap deterministic ones.
pub trait Evaluator {
    /// Dev examples in a full evaluation.
    fn dev_size(&self) -> usize;
    /// Scores candidates on the first `n` dev examples (`1 <= n <= dev_size`), one score each,
    /// in order, higher is better.
    fn evaluate(&mut self, candidates: &[Candidate], n: usize) -> Result<Vec<f64>, EvolveError>;
    /// Called once after each generation (0 = the initial population) with the population
    /// sorted best first. Default: no-op.
    fn generation_done(
        &mut self,
        _generation: usize,
        _population: &[Scored],
    ) -> Result<(), EvolveError> {
        Ok(())
    }
}

/// Why a search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// All configured generations ran.
    Generations,
    /// The next evaluation would have exceeded `max_evals`.
    MaxEvals,
    /// `max_seconds` passed.
    MaxSeconds,
    /// `patience` generations without a better best.
    Patience,
    /// No operator could make a new prompt.
    Exhausted,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Generations => "generations done",
            StopReason::MaxEvals => "evaluation budget spent",
            StopReason::MaxSeconds => "time budget spent",
            StopReason::Patience => "no improvement within patience",
            StopReason::Exhausted => "no new prompt could be made",
        })
    }
}

/// What a search produced.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    /// The best fully scored candidate (ties: earliest id).
    pub best: Scored,
    /// The user's initial prompts (after dropping duplicates), scored, in the order given.
    pub initial: Vec<Scored>,
    /// The last population, best first.
    pub final_population: Vec<Scored>,
    /// Candidates scored (at least partly), initial prompts included.
    pub candidates_proposed: usize,
    /// Example forward passes charged to the budget.
    pub evals_used: u64,
    /// Generations completed after the initial one.
    pub generations: usize,
    /// Why it ended.
    pub stop: StopReason,
    /// Model replies rejected by cleaning.
    pub rejected_replies: u64,
}

/// Weighted operators grouped by arity, ready to draw from.
pub struct OperatorSet {
    by_arity: Vec<(usize, Vec<WeightedOperator>)>,
}

impl OperatorSet {
    /// Groups the operators with positive weight; errors when none is left.
    pub fn new(operators: Vec<WeightedOperator>) -> Result<Self, EvolveError> {
        let mut by_arity: Vec<(usize, Vec<WeightedOperator>)> = Vec::new();
        for w in operators {
            if !(w.weight.is_finite() && w.weight >= 0.0) {
                return Err(EvolveError::Operators(format!(
                    "operator `{}` has weight {}; weights must be finite numbers >= 0 (0 disables it)",
                    w.operator.name(),
                    w.weight
                )));
            }
            if w.weight == 0.0 {
                continue;
            }
            let a = w.operator.arity();
            match by_arity.iter_mut().find(|(x, _)| *x == a) {
                Some((_, v)) => v.push(w),
                None => by_arity.push((a, vec![w])),
            }
        }
        by_arity.sort_by_key(|(a, _)| *a);
        for (_, set) in &by_arity {
            if !set.iter().map(|w| w.weight).sum::<f64>().is_finite() {
                return Err(EvolveError::Operators(
                    "operator weights are too large to add up; use weights like 1 or 2".to_string(),
                ));
            }
        }
        if by_arity.is_empty() {
            return Err(EvolveError::Operators(
                "no operator has a positive weight; enable at least one (e.g. --operators swap=1)"
                    .to_string(),
            ));
        }
        Ok(Self { by_arity })
    }

    /// Whether some operator takes this many parents.
    pub fn has_arity(&self, arity: usize) -> bool {
        self.by_arity.iter().any(|(a, _)| *a == arity)
    }

    /// Names of the enabled operators.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_arity
            .iter()
            .flat_map(|(_, v)| v.iter().map(|w| w.operator.name()))
            .collect()
    }

    /// An operator of this arity drawn by weight (None when there is none).
    pub fn choose_arity(&self, arity: usize, rng: &mut ChaCha8Rng) -> Option<&dyn Operator> {
        let set = &self.by_arity.iter().find(|(a, _)| *a == arity)?.1;
        Some(weighted_choice(set, rng))
    }

    /// A one-parent operator, or a two-parent one when `crossover` is asked for; falls back to
    /// whichever kind exists.
    pub fn choose(&self, crossover: bool, rng: &mut ChaCha8Rng) -> &dyn Operator {
        let want = if crossover { 2 } else { 1 };
        if self.has_arity(want) {
            return self.choose_arity(want, rng).expect("arity exists");
        }
        let other = if crossover { 1 } else { 2 };
        if self.has_arity(other) {
            return self.choose_arity(other, rng).expect("arity exists");
        }
        weighted_choice(&self.by_arity[0].1, rng)
    }
}

/// Picks from a non-empty set with probability proportional to weight.
fn weighted_choice<'a>(set: &'a [WeightedOperator], rng: &mut ChaCha8Rng) -> &'a dyn Operator {
    let total: f64 = set.iter().map(|w| w.weight).sum();
    let mut r = rng.gen_range(0.0..total);
    for w in set {
        if r < w.weight {
            return w.operator.as_ref();
        }
        r -= w.weight;
    }
    // Floating-point leftovers land on the last one.
    set[set.len() - 1].operator.as_ref()
}

/// Sorts best first; stable, so ties keep their current order.
pub fn sort_best_first(population: &mut [Scored]) {
    population.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// The state of one search, shared by every strategy.
pub struct Search<'e, 'g> {
    evaluator: &'e mut dyn Evaluator,
    /// What operators may use (pool, demos, generator, best prompts so far).
    pub ops: OperatorContext<'g>,
    /// The settings.
    pub config: SearchConfig,
    next_id: u64,
    seen: BTreeSet<String>,
    charged: HashMap<u64, usize>,
    evals_used: u64,
    started: Instant,
    best: Option<Scored>,
    initial: Vec<Scored>,
    archive: Vec<Scored>,
    proposed: usize,
    stop: Option<StopReason>,
    stale: usize,
    last_best: f64,
    generations: usize,
}

impl<'e, 'g> Search<'e, 'g> {
    /// A search over `evaluator`.
    pub fn new(
        evaluator: &'e mut dyn Evaluator,
        ops: OperatorContext<'g>,
        config: SearchConfig,
    ) -> Self {
        Self {
            evaluator,
            ops,
            config,
            next_id: 0,
            seen: BTreeSet::new(),
            charged: HashMap::new(),
            evals_used: 0,
            started: Instant::now(),
            best: None,
            initial: Vec::new(),
            archive: Vec::new(),
            proposed: 0,
            stop: None,
            stale: 0,
            last_best: f64::NEG_INFINITY,
            generations: 0,
        }
    }

    /// Example forward passes charged so far.
    pub fn evals_used(&self) -> u64 {
        self.evals_used
    }

    /// Whether the search should stop (budget, time, patience, or a strategy's own reason).
    pub fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// Ends the search with this reason (the first reason given wins).
    pub fn stop(&mut self, reason: StopReason) {
        self.stop.get_or_insert(reason);
    }

    /// The best fully scored candidate so far.
    pub fn best(&self) -> Option<&Scored> {
        self.best.as_ref()
    }

    /// Every scored candidate so far, in scoring order.
    pub fn archive(&self) -> &[Scored] {
        &self.archive
    }

    /// Makes a candidate if its prompt is new to this search.
    pub fn propose(
        &mut self,
        genome: Genome,
        parents: Vec<u64>,
        operator: &str,
        generation: usize,
    ) -> Option<Candidate> {
        if genome.is_empty() || !self.seen.insert(genome.render()) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        Some(Candidate {
            id,
            parents,
            operator: operator.to_string(),
            genome,
            generation,
        })
    }

    /// Applies `op` to the parents and proposes the child (None: it did not apply or the prompt
    /// is not new).
    pub fn vary(
        &mut self,
        op: &dyn Operator,
        parents: &[&Candidate],
        generation: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Candidate>, EvolveError> {
        let genomes: Vec<&Genome> = parents.iter().map(|c| &c.genome).collect();
        let Some(genome) = op.apply(&genomes, &mut self.ops, rng)? else {
            return Ok(None);
        };
        let ids = parents.iter().map(|c| c.id).collect();
        Ok(self.propose(genome, ids, op.name(), generation))
    }

    /// Tries to make one new child: `pick` draws an operator and its parents, each attempt
    /// costing 1 unit ([`MODEL_ATTEMPT_COST`] when the model is asked) of
    /// [`MAX_ATTEMPTS_PER_SLOT`].
    pub fn breed<'p>(
        &mut self,
        generation: usize,
        rng: &mut ChaCha8Rng,
        mut pick: impl FnMut(&mut ChaCha8Rng) -> Option<(&'p dyn Operator, Vec<&'p Candidate>)>,
    ) -> Result<Option<Candidate>, EvolveError> {
        let mut spent = 0;
        while spent < MAX_ATTEMPTS_PER_SLOT {
            let Some((op, parents)) = pick(rng) else {
                return Ok(None);
            };
            spent += if op.needs_model() {
                MODEL_ATTEMPT_COST
            } else {
                1
            };
            if let Some(child) = self.vary(op, &parents, generation, rng)? {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }

    /// Checks the time budget.
    fn check_time(&mut self) {
        if let Some(max) = self.config.max_seconds {
            if self.started.elapsed().as_secs_f64() >= max {
                self.stop(StopReason::MaxSeconds);
            }
        }
    }

    /// Scores candidates within the budget, racing them when configured, and updates the best.
    /// Returns those scored (at least on part of dev), in order; candidates that did not fit in
    /// the budget are dropped and the search is marked stopped.
    pub fn score(&mut self, candidates: Vec<Candidate>) -> Result<Vec<Scored>, EvolveError> {
        let full = self.evaluator.dev_size().max(1);
        let k = self.config.elite.max(1);
        let threshold = {
            let mut fulls: Vec<f64> = self
                .archive
                .iter()
                .filter(|s| s.full)
                .map(|s| s.score)
                .collect();
            fulls.sort_by(|a, b| b.total_cmp(a));
            fulls.get(k - 1).copied()
        };
        let rungs: Vec<usize> = match (self.config.racing, threshold) {
            (true, Some(_)) => {
                let mut r: Vec<usize> = [full / 4, full / 2, full]
                    .into_iter()
                    .filter(|&n| n > 0)
                    .collect();
                r.dedup();
                r
            }
            _ => vec![full],
        };
        let mut out = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let mut result: Option<Scored> = None;
            for &n in &rungs {
                self.check_time();
                if self.stopped() {
                    break;
                }
                let cost =
                    n.saturating_sub(self.charged.get(&candidate.id).copied().unwrap_or(0)) as u64;
                if let Some(max) = self.config.max_evals {
                    if self.evals_used + cost > max {
                        self.stop(StopReason::MaxEvals);
                        break;
                    }
                }
                let scores = self
                    .evaluator
                    .evaluate(std::slice::from_ref(&candidate), n)?;
                if scores.len() != 1 {
                    return Err(EvolveError::ScoreCount {
                        expected: 1,
                        got: scores.len(),
                    });
                }
                let score = scores[0];
                if score.is_nan() {
                    return Err(EvolveError::NanScore {
                        id: candidate.id,
                        prompt: candidate.prompt(),
                    });
                }
                self.evals_used += cost;
                self.charged.insert(candidate.id, n);
                let is_full = n >= full;
                result = Some(Scored {
                    candidate: candidate.clone(),
                    score,
                    full: is_full,
                });
                if !is_full {
                    // Successive halving: continue only while an optimistic bound on the
                    // full-dev score could still reach the top k.
                    let p = score.clamp(0.05, 0.95);
                    let upper = score + (p * (1.0 - p) / n as f64).sqrt();
                    if upper < threshold.unwrap_or(f64::NEG_INFINITY) {
                        break;
                    }
                }
            }
            let Some(s) = result else {
                continue;
            };
            self.proposed += 1;
            if s.full && self.best.as_ref().is_none_or(|b| s.score > b.score) {
                self.best = Some(s.clone());
            }
            self.archive.push(s.clone());
            out.push(s);
        }
        Ok(out)
    }

    /// The initial population: the user's prompts (duplicates dropped), then children of them
    /// made by `operators` until there are `size`, all scored; returns it best first, at most
    /// `size` long (all initial prompts are scored even when there are more).
    pub fn initial_population(
        &mut self,
        prompts: &[String],
        size: usize,
        operators: Option<&OperatorSet>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if prompts.is_empty() {
            return Err(EvolveError::NoInitialPrompts);
        }
        let mut gen0 = Vec::new();
        for (index, prompt) in prompts.iter().enumerate() {
            let genome = Genome::parse(prompt);
            if genome.is_empty() {
                return Err(EvolveError::EmptyPrompt { index });
            }
            gen0.extend(self.propose(genome, Vec::new(), INITIAL_OPERATOR, 0));
        }
        let n_initial = gen0.len();
        if let Some(ops) = operators {
            let pool = gen0.clone();
            for _ in n_initial..size {
                let child = self.breed(0, rng, |rng| {
                    let op = ops.choose(false, rng);
                    let parents = (0..op.arity())
                        .map(|_| &pool[rng.gen_range(0..pool.len())])
                        .collect::<Vec<_>>();
                    Some((op, parents))
                })?;
                gen0.extend(child);
            }
        }
        let scored = self.score(gen0)?;
        self.initial = scored
            .iter()
            .filter(|s| s.candidate.operator == INITIAL_OPERATOR)
            .cloned()
            .collect();
        if self.initial.is_empty() {
            return Err(EvolveError::Config(
                "the budget (--max-evals) is too small to score even one initial prompt on dev"
                    .to_string(),
            ));
        }
        let mut population = scored;
        sort_best_first(&mut population);
        population.truncate(size.max(1));
        Ok(population)
    }

    /// Ends a generation: reports the population, updates the prompts operators see as "best
    /// so far", and checks patience. Returns whether the search goes on.
    pub fn end_generation(
        &mut self,
        generation: usize,
        population: &[Scored],
    ) -> Result<bool, EvolveError> {
        self.generations = generation;
        self.evaluator.generation_done(generation, population)?;
        let mut fulls: Vec<&Scored> = self.archive.iter().filter(|s| s.full).collect();
        fulls.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.candidate.id.cmp(&b.candidate.id))
        });
        self.ops.best = fulls
            .iter()
            .take(5)
            .map(|s| s.candidate.genome.clone())
            .collect();
        let best = self.best.as_ref().map_or(f64::NEG_INFINITY, |b| b.score);
        if best > self.last_best {
            self.stale = 0;
            self.last_best = best;
        } else {
            self.stale += 1;
        }
        if let Some(p) = self.config.patience {
            if self.stale >= p {
                self.stop(StopReason::Patience);
            }
        }
        self.check_time();
        if generation >= self.config.generations {
            self.stop(StopReason::Generations);
        }
        Ok(!self.stopped())
    }

    /// The outcome, with `final_population` as the last population.
    pub fn finish(self, mut final_population: Vec<Scored>) -> Result<SearchOutcome, EvolveError> {
        sort_best_first(&mut final_population);
        let best = self.best.ok_or(EvolveError::NoInitialPrompts)?;
        Ok(SearchOutcome {
            best,
            initial: self.initial,
            final_population,
            candidates_proposed: self.proposed,
            evals_used: self.evals_used,
            generations: self.generations,
            stop: self.stop.unwrap_or(StopReason::Generations),
            rejected_replies: self.ops.rejected_replies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::strategies::testing::*;
    use crate::evolve::strategies::SearchConfig;

    #[test]
    fn the_budget_is_never_exceeded_and_is_counted_per_example() {
        for strategy in ["ga", "random", "hillclimb"] {
            for max in [40u64, 170, 333] {
                let cfg = SearchConfig {
                    strategy: strategy.into(),
                    max_evals: Some(max),
                    generations: 1000,
                    patience: None,
                    ..SearchConfig::default()
                };
                let (outcome, ev) = run(&cfg, 1);
                let charged: u64 = ev.sizes.iter().map(|&n| n as u64).sum();
                assert_eq!(outcome.evals_used, charged, "{strategy} {max}");
                assert!(charged <= max, "{strategy}: {charged} > {max}");
                if strategy != "hillclimb" {
                    // Stopped by the budget, with less than one evaluation left unspent.
                    assert_eq!(outcome.stop, StopReason::MaxEvals, "{strategy} {max}");
                    assert!(max - charged < TOY_DEV as u64);
                }
            }
        }
    }

    #[test]
    fn patience_stops_a_search_that_does_not_improve() {
        // Only deletions of a prompt without "careful": nothing can improve the toy score much.
        let cfg = SearchConfig {
            generations: 1000,
            patience: Some(2),
            operators: [
                ("insert", 0.0),
                ("persona", 0.0),
                ("constraint", 0.0),
                ("demo-add", 0.0),
            ]
            .into_iter()
            .map(|(n, w)| (n.to_string(), w))
            .collect(),
            ..SearchConfig::default()
        };
        let (outcome, ev) = run(&cfg, 3);
        assert_eq!(outcome.stop, StopReason::Patience);
        assert!(ev.generations.len() < 50);
        // The last `patience` generations did not raise the best.
        let bests: Vec<f64> = ev.generations.iter().map(|(_, s)| s[0]).collect();
        let n = bests.len();
        assert!(bests[n - 1] <= bests[n - 3]);
    }

    #[test]
    fn racing_stops_weak_candidates_early_and_saves_evaluations() {
        let base = SearchConfig {
            generations: 6,
            ..SearchConfig::default()
        };
        let raced = SearchConfig {
            racing: true,
            ..base.clone()
        };
        let (plain, _) = run(&base, 8);
        let (outcome, ev) = run(&raced, 8);
        // Rungs: a quarter, half, then all of dev.
        assert!(ev
            .sizes
            .iter()
            .all(|n| [TOY_DEV / 4, TOY_DEV / 2, TOY_DEV].contains(n)));
        assert!(ev.sizes.contains(&(TOY_DEV / 4)));
        let partial_only = ev
            .received
            .iter()
            .filter(|c| {
                !ev.received
                    .iter()
                    .zip(&ev.sizes)
                    .any(|(d, &n)| d.id == c.id && n == TOY_DEV)
            })
            .count();
        assert!(partial_only > 0, "some candidates were stopped early");
        let candidates = outcome.candidates_proposed as u64;
        assert!(outcome.evals_used < candidates * TOY_DEV as u64);
        // The best is always a fully scored candidate.
        assert!(outcome.best.full);
        assert!(outcome.best.score >= plain.best.score - 1.0);
    }

    #[test]
    fn time_budget_stops_the_search() {
        let cfg = SearchConfig {
            generations: 1_000_000,
            max_seconds: Some(0.05),
            ..SearchConfig::default()
        };
        let (outcome, _) = run(&cfg, 2);
        assert!(
            matches!(outcome.stop, StopReason::MaxSeconds | StopReason::Exhausted),
            "{:?}",
            outcome.stop
        );
    }
}
