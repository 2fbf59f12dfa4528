//! What every strategy shares: candidate ids and lineage, duplicate detection, per-example
//! results, the budget in example evaluations (counted the same for every strategy), paired
//! screening, racing, patience and the best prompt so far. Strategies decide *which* candidates to make; the [`Search`] decides whether
//! and how far they are scored.

use std::collections::{BTreeSet, HashMap};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::admission::{comparison_parent, Racing, Screening};
use super::budget::{Budget, StopReason};
use super::candidate::{sort_best_first, Candidate, Scored, INITIAL_OPERATOR};
use super::error::EvolveError;
use super::genome::Genome;
use super::operators::{Operator, OperatorContext, OperatorSet, Unit};
use super::results::{ExampleResult, Pool, Results};

/// How many attempt units one population slot gets before it is given up; an attempt with an
/// edit or crossover costs 1, one that asks the model costs [`MODEL_ATTEMPT_COST`].
pub(crate) const MAX_ATTEMPTS_PER_SLOT: usize = 50;

/// Attempt units a model-driven attempt costs (so a slot asks the model at most 5 times).
pub(crate) const MODEL_ATTEMPT_COST: usize = 10;

/// Scores candidates, example by example. Implemented outside this module (by the model-backed
/// run evaluator); tests implement cheap deterministic ones. The search asks only for examples
/// it has not scored for that candidate before, so the evaluator never scores a pair twice.
pub trait Evaluator {
    /// Examples in a pool (dev: a full evaluation; validation: the final choice's split; train:
    /// the demonstrations' pool).
    fn pool_size(&self, pool: Pool) -> usize;
    /// Scores one candidate on these examples of `pool` (indices below `pool_size`); one result
    /// per example, in the order asked.
    fn evaluate(
        &mut self,
        candidate: &Candidate,
        pool: Pool,
        examples: &[usize],
    ) -> Result<Vec<ExampleResult>, EvolveError>;
    /// Validation examples the final choice may grow to when its decision is close (at least
    /// [`Evaluator::pool_size`] of validation). Default: no more than that.
    fn validation_capacity(&self) -> usize {
        self.pool_size(Pool::Validation)
    }
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

/// How far a search may go and how it scores candidates: the settings [`Search`] itself obeys,
/// whatever the strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchLimits {
    /// Generations after the initial one (an upper bound when a budget is also set).
    pub generations: usize,
    /// Stop before an evaluation would exceed this many example evaluations (dev and train
    /// examples; validation is counted apart).
    pub max_evals: Option<u64>,
    /// Stop after this many seconds.
    pub max_seconds: Option<f64>,
    /// Stop after this many generations without a better best.
    pub patience: Option<usize>,
    /// Successive halving on a quarter, then half of dev.
    pub racing: bool,
    /// Racing drops a candidate that cannot reach the current top this many.
    pub racing_top: usize,
    /// Paired screening: a child is first scored on this many dev examples its best parent was
    /// scored on, and on the rest only when it is not worse there (0: off).
    pub screen: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            generations: 5,
            max_evals: None,
            max_seconds: None,
            patience: None,
            racing: false,
            racing_top: 2,
            screen: 0,
        }
    }
}

/// Attempt units one try with `op` costs (see [`MAX_ATTEMPTS_PER_SLOT`]).
fn attempt_cost(op: &dyn Operator) -> usize {
    if op.needs_model() {
        MODEL_ATTEMPT_COST
    } else {
        1
    }
}

/// The state of one search, shared by every strategy.
pub struct Search<'e, 'g> {
    evaluator: &'e mut dyn Evaluator,
    /// What operators may use (pool, demos, generator, best prompts so far).
    pub ops: OperatorContext<'g>,
    limits: SearchLimits,
    next_id: u64,
    seen: BTreeSet<String>,
    dev: HashMap<u64, Results>,
    train: HashMap<u64, Results>,
    budget: Budget,
    best: Option<Scored>,
    initial: Vec<Scored>,
    archive: Vec<Scored>,
    proposed: usize,
    stop: Option<StopReason>,
    stale: usize,
    last_best: f64,
    generations: usize,
    screened_out: u64,
}

impl<'e, 'g> Search<'e, 'g> {
    /// A search over `evaluator`.
    pub fn new(
        evaluator: &'e mut dyn Evaluator,
        ops: OperatorContext<'g>,
        limits: SearchLimits,
    ) -> Self {
        let budget = Budget::new(limits.max_evals, limits.max_seconds);
        Self {
            evaluator,
            ops,
            limits,
            next_id: 0,
            seen: BTreeSet::new(),
            dev: HashMap::new(),
            train: HashMap::new(),
            budget,
            best: None,
            initial: Vec::new(),
            archive: Vec::new(),
            proposed: 0,
            stop: None,
            stale: 0,
            last_best: f64::NEG_INFINITY,
            generations: 0,
            screened_out: 0,
        }
    }

    /// Example evaluations charged so far.
    pub fn evals_used(&self) -> u64 {
        self.budget.evals_used
    }

    /// Example evaluations spent on validation so far (not charged to the budget).
    pub(crate) fn validation_evals(&self) -> u64 {
        self.budget.validation_evals
    }

    /// Why the search stopped (None while it goes on).
    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Candidates scored (at least partly), initial prompts included.
    pub(crate) fn candidates_proposed(&self) -> usize {
        self.proposed
    }

    /// Generations completed after the initial one.
    pub(crate) fn generations(&self) -> usize {
        self.generations
    }

    /// Children that paired screening stopped.
    pub(crate) fn screened_out(&self) -> u64 {
        self.screened_out
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
    pub(crate) fn archive(&self) -> &[Scored] {
        &self.archive
    }

    /// The initial prompts, scored (after [`Search::initial_population`]).
    pub fn initial(&self) -> &[Scored] {
        &self.initial
    }

    /// A candidate's per-example dev results.
    pub(crate) fn dev_results(&self, id: u64) -> Option<&Results> {
        self.dev.get(&id)
    }

    /// Examples in a full dev evaluation.
    pub(crate) fn dev_size(&self) -> usize {
        self.evaluator.pool_size(Pool::Dev)
    }

    /// Makes a candidate if its prompt is new to this search.
    pub(crate) fn propose(
        &mut self,
        genome: Genome,
        parents: Vec<u64>,
        operator: &str,
        generation: usize,
    ) -> Option<Candidate> {
        if genome.is_empty() {
            return None;
        }
        let prompt = genome.render(self.ops.train);
        if !self.seen.insert(prompt.clone()) {
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
            prompt,
        })
    }

    /// Applies `op` to the parents and proposes the child (None: it did not apply or the prompt
    /// is not new).
    pub(crate) fn vary(
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
    pub(crate) fn breed<'p>(
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
            spent += attempt_cost(op);
            if let Some(child) = self.vary(op, &parents, generation, rng)? {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }

    /// Tries to make one mutant of a Promptbreeder unit (`parent` with its mutation-prompt),
    /// attempts counted as in [`Search::breed`]: the child and its unit's mutation-prompt
    /// (a rejected attempt's never reaches the next one).
    pub(crate) fn breed_unit<'p>(
        &mut self,
        generation: usize,
        parent: &Candidate,
        mutation_prompt: &str,
        thinking_style: &str,
        rng: &mut ChaCha8Rng,
        mut pick: impl FnMut(&mut ChaCha8Rng) -> Option<&'p dyn Operator>,
    ) -> Result<Option<(Candidate, String)>, EvolveError> {
        let unit = Unit {
            genome: parent.genome.clone(),
            mutation_prompt: mutation_prompt.to_string(),
        };
        let mut spent = 0;
        while spent < MAX_ATTEMPTS_PER_SLOT {
            let Some(op) = pick(rng) else {
                return Ok(None);
            };
            spent += attempt_cost(op);
            let Some(mutant) = op.apply_unit(&unit, thinking_style, &mut self.ops, rng)? else {
                continue;
            };
            if let Some(child) = self.propose(mutant.genome, vec![parent.id], op.name(), generation)
            {
                return Ok(Some((child, mutant.mutation_prompt)));
            }
        }
        Ok(None)
    }

    /// Checks the time budget.
    fn check_time(&mut self) {
        if self.budget.out_of_time() {
            self.stop(StopReason::MaxSeconds);
        }
    }

    /// Asks the evaluator for these examples and checks what comes back; charges dev and train
    /// examples to the budget (None, and the search stopped, when they do not fit).
    fn run_evaluation(
        &mut self,
        candidate: &Candidate,
        pool: Pool,
        examples: &[usize],
    ) -> Result<Option<Vec<ExampleResult>>, EvolveError> {
        let cost = examples.len() as u64;
        if pool != Pool::Validation && !self.budget.fits(cost) {
            self.stop(StopReason::MaxEvals);
            return Ok(None);
        }
        let results = self.evaluator.evaluate(candidate, pool, examples)?;
        if results.len() != examples.len() {
            return Err(EvolveError::ScoreCount {
                expected: examples.len(),
                got: results.len(),
            });
        }
        if results
            .iter()
            .any(|r| r.fitness.is_nan() || r.metric.is_nan())
        {
            return Err(EvolveError::NanScore {
                id: candidate.id,
                prompt: candidate.prompt(),
            });
        }
        match pool {
            Pool::Validation => self.budget.validation_evals += cost,
            _ => self.budget.evals_used += cost,
        }
        Ok(Some(results))
    }

    /// Scores `candidate` on these dev examples (only those not scored before); false when the
    /// budget or the clock stopped the search first.
    fn score_on(&mut self, candidate: &Candidate, examples: &[usize]) -> Result<bool, EvolveError> {
        self.check_time();
        if self.stopped() {
            return Ok(false);
        }
        let have = self.dev.get(&candidate.id);
        let missing: Vec<usize> = examples
            .iter()
            .copied()
            .filter(|&i| have.is_none_or(|r| !r.contains(i)))
            .collect();
        if missing.is_empty() {
            return Ok(true);
        }
        let Some(results) = self.run_evaluation(candidate, Pool::Dev, &missing)? else {
            return Ok(false);
        };
        self.dev.entry(candidate.id).or_default().extend(results);
        Ok(true)
    }

    /// The parent a child is screened against: the one with the best full dev score.
    fn screening_parent(&self, candidate: &Candidate) -> Option<u64> {
        let parents = candidate
            .parents
            .iter()
            .filter_map(|p| self.dev.get(p).map(|r| (*p, r)));
        comparison_parent(parents, self.dev_size()).map(|(p, _)| p)
    }

    /// A scored child's paired dev gain over its screening parent (the parent with the best
    /// full dev score), on the dev examples both were scored on: what paired screening
    /// measured for it, or the full-dev difference when it passed. None for an initial prompt,
    /// a child not scored, or one without a fully scored parent.
    pub(crate) fn paired_gain(&self, child: &Candidate) -> Option<f64> {
        let parent = self.screening_parent(child)?;
        self.dev.get(&child.id)?.paired_gain(&self.dev[&parent])
    }

    /// Scores candidates within the budget and updates the best. A child is first screened on
    /// a minibatch of dev examples against its best parent (when `screen` is set), then raced
    /// (when `racing` is set), then scored on the rest of dev. Every candidate scored at all
    /// goes to the archive; returns those scored on the full dev set, in order. Candidates that
    /// did not fit in the budget are dropped and the search is marked stopped.
    pub fn score(
        &mut self,
        candidates: Vec<Candidate>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        let full = self.dev_size().max(1);
        let screening = Screening {
            size: self.limits.screen,
        };
        let racing = Racing {
            on: self.limits.racing,
            top: self.limits.racing_top,
        };
        let threshold = racing.threshold(self.archive.iter().filter(|s| s.full).map(|s| s.score));
        let rungs = racing.rungs(full, threshold);
        let all: Vec<usize> = (0..full).collect();
        let mut out = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let mut go_on = true;
            if screening.applies(full) {
                if let Some(parent) = self.screening_parent(&candidate) {
                    let batch = screening.minibatch(full, rng);
                    go_on = self.score_on(&candidate, &batch)?;
                    if go_on
                        && !Screening::passes(&self.dev[&candidate.id], &self.dev[&parent], &batch)
                    {
                        self.screened_out += 1;
                        go_on = false;
                    }
                }
            }
            for &n in &rungs {
                if !go_on {
                    break;
                }
                go_on = self.score_on(&candidate, &all[..n])?;
                if go_on {
                    go_on = Racing::keeps(&self.dev[&candidate.id], threshold);
                }
            }
            if go_on {
                self.score_on(&candidate, &all)?;
            }
            let Some(results) = self.dev.get(&candidate.id) else {
                continue;
            };
            let s = Scored {
                score: results.mean_fitness(),
                accuracy: results.mean_metric(),
                n: results.len(),
                full: results.len() >= full,
                candidate,
            };
            self.proposed += 1;
            if s.full && self.best.as_ref().is_none_or(|b| s.score > b.score) {
                self.best = Some(s.clone());
            }
            self.archive.push(s.clone());
            if s.full {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// A candidate's results on `m` train-pool examples it was not probed on before (charged to
    /// the budget), with every earlier probe's; None when the pool is empty or the budget is
    /// spent. Error-driven moves and reflection read the failures from it.
    pub(crate) fn probe_train(
        &mut self,
        candidate: &Candidate,
        m: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Results>, EvolveError> {
        let size = self.evaluator.pool_size(Pool::Train);
        let have = self.train.get(&candidate.id);
        let fresh: Vec<usize> = (0..size)
            .filter(|&i| have.is_none_or(|r| !r.contains(i)))
            .collect();
        if fresh.is_empty() {
            return Ok(self.train.get(&candidate.id).cloned());
        }
        let take = m.min(fresh.len());
        let mut examples: Vec<usize> = rand::seq::index::sample(rng, fresh.len(), take)
            .into_iter()
            .map(|i| fresh[i])
            .collect();
        examples.sort_unstable();
        self.check_time();
        if self.stopped() {
            return Ok(None);
        }
        let Some(results) = self.run_evaluation(candidate, Pool::Train, &examples)? else {
            return Ok(None);
        };
        let entry = self.train.entry(candidate.id).or_default();
        entry.extend(results);
        Ok(Some(entry.clone()))
    }

    /// Scores candidates on the first `n` validation examples (counted apart from the budget);
    /// their results, in order.
    pub fn validate(
        &mut self,
        candidates: &[Candidate],
        n: usize,
    ) -> Result<Vec<Results>, EvolveError> {
        let n = n.min(self.evaluator.pool_size(Pool::Validation));
        let examples: Vec<usize> = (0..n).collect();
        let mut out = Vec::with_capacity(candidates.len());
        for c in candidates {
            let mut r = Results::default();
            if n > 0 {
                r.extend(
                    self.run_evaluation(c, Pool::Validation, &examples)?
                        .unwrap_or_default(),
                );
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Scores one candidate on these validation examples (not charged to the budget).
    pub(crate) fn validate_on(
        &mut self,
        candidate: &Candidate,
        examples: &[usize],
    ) -> Result<Vec<ExampleResult>, EvolveError> {
        if examples.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .run_evaluation(candidate, Pool::Validation, examples)?
            .unwrap_or_default())
    }

    /// Validation examples the final choice looks at first.
    pub(crate) fn validation_size(&self) -> usize {
        self.evaluator.pool_size(Pool::Validation)
    }

    /// Validation examples the final choice may grow to when its decision is close.
    pub(crate) fn validation_capacity(&self) -> usize {
        self.evaluator
            .validation_capacity()
            .max(self.validation_size())
    }

    /// The initial population: the user's prompts (duplicates dropped), then children of them
    /// made by `operators` until there are `size`, all scored; returns it best first, at most
    /// `size` long (all initial prompts are scored even when there are more).
    pub(crate) fn initial_population(
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
        let mut scored = self.score(gen0.clone(), rng)?;
        if let Some(ops) = operators {
            let pool = gen0;
            let mut children = Vec::new();
            for _ in n_initial..size {
                let child = self.breed(0, rng, |rng| {
                    let op = ops.choose(false, rng);
                    let parents = (0..op.arity())
                        .map(|_| &pool[rng.gen_range(0..pool.len())])
                        .collect::<Vec<_>>();
                    Some((op, parents))
                })?;
                children.extend(child);
            }
            scored.extend(self.score(children, rng)?);
        }
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
    pub(crate) fn end_generation(
        &mut self,
        generation: usize,
        population: &[Scored],
    ) -> Result<bool, EvolveError> {
        self.generations = generation;
        self.evaluator.generation_done(generation, population)?;
        self.ops.best = self
            .ranked_full()
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
        if let Some(p) = self.limits.patience {
            if self.stale >= p {
                self.stop(StopReason::Patience);
            }
        }
        self.check_time();
        if generation >= self.limits.generations {
            self.stop(StopReason::Generations);
        }
        Ok(!self.stopped())
    }

    /// Fully scored candidates, best first (ties: earliest id).
    pub(crate) fn ranked_full(&self) -> Vec<&Scored> {
        let mut fulls: Vec<&Scored> = self.archive.iter().filter(|s| s.full).collect();
        fulls.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.candidate.id.cmp(&b.candidate.id))
        });
        fulls
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
                let charged = ev.charged();
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
        let raced = SearchConfig {
            generations: 6,
            racing: true,
            screen: 0,
            ..SearchConfig::default()
        };
        // Per-example fitness varies (up to 0.3 either way), so a rung's mean is not the
        // full-dev score: racing has to decide on noisy partial means.
        let spread = 0.3;
        let mut ev = ToyEvaluator {
            spread,
            ..ToyEvaluator::default()
        };
        let outcome = crate::evolve::driver::run_search(
            &raced,
            &prompts(),
            context(),
            &mut ev,
            &mut rand::SeedableRng::seed_from_u64(8),
        )
        .unwrap();
        // Rungs: a quarter, then half, then all of dev; each call asks only for new examples.
        let dev_calls: Vec<usize> = (0..ev.sizes.len())
            .filter(|&k| ev.pools[k] == Pool::Dev)
            .map(|k| ev.sizes[k])
            .collect();
        assert!(dev_calls
            .iter()
            .all(|n| [TOY_DEV / 4, TOY_DEV / 2, TOY_DEV].contains(n)));
        let stopped: Vec<&Candidate> = ev
            .received
            .iter()
            .filter(|c| ev.dev_examples(c.id) < TOY_DEV)
            .collect();
        assert!(!stopped.is_empty(), "some candidates were stopped early");
        let candidates = outcome.candidates_proposed as u64;
        assert!(outcome.evals_used < candidates * TOY_DEV as u64);
        // The best is always a fully scored candidate, and it is the best full-dev score.
        assert!(outcome.dev_best.full);
        let mean_on = |c: &Candidate, n: usize| {
            (0..n)
                .map(|e| toy_fitness(&c.prompt(), e, spread))
                .sum::<f64>()
                / n as f64
        };
        let mut noisy = 0;
        for c in stopped {
            // Racing stops a candidate only when an optimistic bound on what it had been
            // scored on fell below the top it had to reach, which is never above the best:
            // so its mean there is below the best's full-dev score.
            let n = ev.dev_examples(c.id);
            let mean = mean_on(c, n);
            assert!(
                mean < outcome.dev_best.score,
                "{c:?} stopped at {mean} on {n} examples"
            );
            if (mean - toy_score(&c.prompt())).abs() > 0.01 {
                noisy += 1;
            }
        }
        assert!(noisy > 0, "the rung means equal the full-dev scores");
    }

    #[test]
    fn screening_gives_the_rest_of_dev_only_to_children_not_worse_than_their_parent() {
        let cfg = SearchConfig {
            generations: 6,
            screen: 10,
            ..SearchConfig::default()
        };
        let (outcome, ev) = run(&cfg, 5);
        let score = |id: u64| toy_score(&ev.received.iter().find(|c| c.id == id).unwrap().prompt());
        let (mut passed, mut stopped) = (0, 0);
        for c in ev.received.iter().filter(|c| !c.parents.is_empty()) {
            let parent = c
                .parents
                .iter()
                .filter(|p| ev.dev_examples(**p) == TOY_DEV)
                .map(|p| score(*p))
                .fold(f64::NEG_INFINITY, f64::max);
            match ev.dev_examples(c.id) {
                n if n == TOY_DEV => {
                    passed += 1;
                    assert!(toy_score(&c.prompt()) >= parent, "{c:?}");
                }
                10 => {
                    stopped += 1;
                    assert!(toy_score(&c.prompt()) < parent, "{c:?}");
                }
                n => panic!("child scored on {n} examples"),
            }
        }
        assert!(passed > 0 && stopped > 0, "{passed} {stopped}");
        assert_eq!(outcome.screened_out, stopped as u64);
    }

    #[test]
    fn the_answer_is_chosen_on_validation_and_the_initial_prompt_stays_unless_beaten() {
        let cfg = SearchConfig {
            generations: 3,
            ..SearchConfig::default()
        };
        let (outcome, ev) = run(&cfg, 2);
        let choice = outcome
            .final_choice
            .clone()
            .expect("toy has a validation split");
        assert_eq!(choice.finalists[0].operator, INITIAL_OPERATOR);
        assert_eq!(choice.finalists.len(), 1 + cfg.finalists);
        assert_eq!(
            outcome.validation_evals,
            (choice.finalists.len() * TOY_VALIDATION) as u64
        );
        // Validation is not charged to the budget.
        assert_eq!(outcome.evals_used, ev.charged());
        // Chosen on validation accuracy, then validation fitness.
        let chosen = choice
            .finalists
            .iter()
            .find(|f| f.id == choice.chosen)
            .unwrap();
        for f in &choice.finalists {
            assert!(
                (f.validation_accuracy, f.validation_score)
                    <= (chosen.validation_accuracy, chosen.validation_score),
                "{f:?} beats {chosen:?}"
            );
        }
        assert_eq!(outcome.best.candidate.id, choice.chosen);
        assert!(
            !choice.kept_initial,
            "the toy's children do beat the initial prompts"
        );
        // When validation disagrees with dev (scores flipped), the initial prompt stays.
        let mut flipped = ToyEvaluator {
            flip_validation: true,
            ..ToyEvaluator::default()
        };
        let outcome = crate::evolve::driver::run_search(
            &cfg,
            &prompts(),
            context(),
            &mut flipped,
            &mut rand::SeedableRng::seed_from_u64(2),
        )
        .unwrap();
        let choice = outcome.final_choice.unwrap();
        assert!(choice.kept_initial, "{}", choice.reason);
        assert_eq!(outcome.best.candidate.operator, INITIAL_OPERATOR);
        assert_ne!(outcome.best.candidate.id, outcome.dev_best.candidate.id);
    }

    /// A Promptbreeder-like operator: the parent plus `phrase` (nothing when empty), its unit
    /// given a new mutation-prompt.
    struct Hyper(&'static str);

    impl Operator for Hyper {
        fn name(&self) -> &'static str {
            "pb-hypermutation"
        }
        fn family(&self) -> crate::evolve::Family {
            crate::evolve::Family::Edit
        }
        fn arity(&self) -> usize {
            1
        }
        fn apply(
            &self,
            parents: &[&Genome],
            _ctx: &mut OperatorContext<'_>,
            _rng: &mut ChaCha8Rng,
        ) -> Result<Option<Genome>, EvolveError> {
            let mut g = parents[0].clone();
            if !self.0.is_empty() {
                g.phrases.push(self.0.into());
            }
            Ok(Some(g))
        }
        fn apply_unit(
            &self,
            unit: &Unit,
            _thinking_style: &str,
            ctx: &mut OperatorContext<'_>,
            rng: &mut ChaCha8Rng,
        ) -> Result<Option<Unit>, EvolveError> {
            Ok(self.apply(&[&unit.genome], ctx, rng)?.map(|genome| Unit {
                genome,
                mutation_prompt: format!("improved by {}", self.0),
            }))
        }
    }

    #[test]
    fn a_rejected_attempts_mutation_prompt_does_not_reach_the_next_child() {
        let mut ev = ToyEvaluator::default();
        let mut search = Search::new(&mut ev, context(), SearchLimits::default());
        let rng = &mut rand::SeedableRng::seed_from_u64(0);
        let parent = search
            .propose(
                Genome::parse("Classify it."),
                Vec::new(),
                INITIAL_OPERATOR,
                0,
            )
            .unwrap();
        // The first attempt makes a duplicate (rejected) with a new mutation-prompt, the
        // second a new child with its own.
        let (dup, new) = (Hyper(""), Hyper("Be careful."));
        let mut attempts = [&dup as &dyn Operator, &new].into_iter();
        let (child, mutation_prompt) = search
            .breed_unit(1, &parent, "the parent's", "a style", rng, |_| {
                attempts.next()
            })
            .unwrap()
            .expect("the second attempt is new");
        assert_eq!(child.prompt(), "Classify it. Be careful.");
        assert_eq!(mutation_prompt, "improved by Be careful.");
    }

    #[test]
    fn time_budget_stops_the_search() {
        let cfg = SearchConfig {
            generations: 1_000_000,
            max_seconds: Some(0.3),
            ..SearchConfig::default()
        };
        // 20 ms an evaluation: the clock runs out after a dozen or so evaluations, long before
        // the toy's operators could run out of new prompts (they make hundreds).
        let mut ev = ToyEvaluator {
            delay: std::time::Duration::from_millis(20),
            ..ToyEvaluator::default()
        };
        let started = std::time::Instant::now();
        let outcome = crate::evolve::driver::run_search(
            &cfg,
            &prompts(),
            context(),
            &mut ev,
            &mut rand::SeedableRng::seed_from_u64(2),
        )
        .unwrap();
        assert_eq!(outcome.stop, StopReason::MaxSeconds);
        assert!(outcome.generations < 1_000, "{}", outcome.generations);
        // It stopped soon after the limit: the validation of the finalists comes after.
        assert!(started.elapsed().as_secs_f64() < 30.0);
    }
}
