//! The evaluator a strategy queries: scores a candidate on the examples the search asks for
//! (dev, validation or the train pool) with the [`Scorer`], logs every evaluation with its
//! per-example results to `evaluations.jsonl`, replays a crashed run's log instead of scoring
//! again, and reports progress on stderr.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::evolve::results::{ExampleResult, Pool, Results};
use crate::evolve::{Candidate, Evaluator, EvolveError, Scored};
use crate::progress::{Event, Progress};
use crate::run::checkpoint::{Checkpoint, Member};
use crate::run::folder::RunFolder;
use crate::run::log::{EvaluationLog, EvaluationRecord};
use crate::score::Scorer;
use crate::task::metric::Scored as MetricScored;
use crate::task::{metrics, Fitness, Split};

/// How many examples of each pool a run scores on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSizes {
    /// Dev examples per full evaluation.
    pub dev: usize,
    /// Validation examples the final choice looks at first.
    pub validation: usize,
    /// Validation examples the final choice may grow to when its decision is close (the
    /// task's whole validation split; 0 with validation off).
    pub validation_capacity: usize,
    /// Train examples offered as demonstrations (and probed by error-driven moves).
    pub train: usize,
}

/// Scores candidates and logs them.
pub(crate) struct RunEvaluator<'s, 'm> {
    scorer: &'s mut Scorer<'m>,
    log: EvaluationLog,
    sizes: PoolSizes,
    calibrate: bool,
    fitness: Fitness,
    progress: &'s dyn Progress,
    started: Instant,
    replay: VecDeque<EvaluationRecord>,
    so_far: HashMap<(u64, Pool), Results>,
    evals_used: u64,
    checkpoints: Option<RunFolder>,
    best: f64,
    /// Each example's balanced-accuracy weight, per pool (computed on first use).
    example_weights: HashMap<Pool, Vec<f64>>,
    /// (L, the longest initial prompt's tokens): fitness loses L x tokens / longest.
    length_penalty: Option<(f64, usize)>,
    /// Every record of the run (replayed and new), in order.
    pub records: Vec<EvaluationRecord>,
}

impl<'s, 'm> RunEvaluator<'s, 'm> {
    /// An evaluator writing to `log`.
    pub fn new(
        scorer: &'s mut Scorer<'m>,
        log: EvaluationLog,
        sizes: PoolSizes,
        calibrate: bool,
        fitness: Fitness,
        progress: &'s dyn Progress,
    ) -> Self {
        Self {
            scorer,
            log,
            sizes,
            calibrate,
            fitness,
            progress,
            started: Instant::now(),
            replay: VecDeque::new(),
            so_far: HashMap::new(),
            evals_used: 0,
            checkpoints: None,
            best: f64::NEG_INFINITY,
            example_weights: HashMap::new(),
            length_penalty: None,
            records: Vec::new(),
        }
    }

    /// Replays these logged evaluations (of an interrupted run, in order) instead of scoring
    /// them again.
    pub(crate) fn with_logged(mut self, logged: Vec<EvaluationRecord>) -> Self {
        self.replay = logged.into();
        self
    }

    /// Makes prompt length a second objective: each example's fitness loses `penalty` x (the
    /// candidate's prompt tokens / the longest of `initial_prompts`' tokens). 0: off.
    pub(crate) fn with_length_penalty(mut self, penalty: f64, initial_prompts: &[String]) -> Self {
        if penalty > 0.0 {
            let longest = initial_prompts
                .iter()
                .map(|p| self.scorer.prompt_tokens(p).0)
                .max()
                .unwrap_or(1)
                .max(1);
            self.length_penalty = Some((penalty, longest));
        }
        self
    }

    /// Writes `checkpoint.json` (population, counters) atomically into `folder` after every
    /// generation.
    pub(crate) fn with_checkpoints(mut self, folder: RunFolder) -> Self {
        self.checkpoints = Some(folder);
        self
    }

    /// Seconds since the evaluator was made.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The task split behind a pool.
    fn split(pool: Pool) -> Split {
        match pool {
            Pool::Dev => Split::Dev,
            Pool::Validation => Split::Validation,
            Pool::Train => Split::Train,
        }
    }

    /// The next logged record, when it is this evaluation (an error when the log disagrees).
    fn replayed(
        &mut self,
        c: &Candidate,
        pool: Pool,
        examples: &[usize],
    ) -> Result<Option<EvaluationRecord>, EvolveError> {
        let Some(r) = self.replay.pop_front() else {
            return Ok(None);
        };
        let logged: Vec<usize> = r.results.iter().map(|x| x.example).collect();
        if r.id != c.id || r.pool != pool || logged != examples || r.prompt != c.prompt() {
            return Err(EvolveError::evaluation(format!(
                "the run log does not match this run: its next evaluation is candidate #{} on {} examples of {} ({:?}), but this run now asks for #{} on {} examples of {} ({:?}); the task, pool or promptevo version changed, so start a new run",
                r.id,
                logged.len(),
                r.pool,
                r.prompt,
                c.id,
                examples.len(),
                pool,
                c.prompt()
            )));
        }
        Ok(Some(r))
    }

    /// The balanced-accuracy weight of each example of `pool` (its gold class's weight), from
    /// the class counts of the examples the pool can score (validation: up to its capacity).
    fn example_weights(&mut self, pool: Pool) -> &[f64] {
        let size = match pool {
            Pool::Validation => self.validation_capacity(),
            _ => self.pool_size(pool),
        };
        let task = self.scorer.task();
        self.example_weights.entry(pool).or_insert_with(|| {
            let gold = task.gold(Self::split(pool));
            let weights =
                metrics::class_weights(&gold[..size.min(gold.len())], task.labels().len());
            gold.iter()
                .map(|g| weights.get(*g).copied().unwrap_or(1.0))
                .collect()
        })
    }

    /// Macro-F1 of a candidate's results so far (generation: the mean metric).
    fn macro_f1(&self, results: &Results, split: Split) -> f64 {
        let task = self.scorer.task();
        if task.is_generation() {
            return results.mean_metric();
        }
        let label = |s: &str| task.labels().iter().position(|l| l == s).unwrap_or(0);
        let examples = task.examples(split);
        let (gold, predicted): (Vec<usize>, Vec<usize>) = results
            .iter()
            .map(|r| (label(&examples[r.example].target), label(&r.predicted)))
            .unzip();
        metrics::macro_f1(&gold, &predicted, task.labels().len())
    }
}

impl Evaluator for RunEvaluator<'_, '_> {
    fn pool_size(&self, pool: Pool) -> usize {
        let limit = match pool {
            Pool::Dev => self.sizes.dev,
            Pool::Validation => self.sizes.validation,
            Pool::Train => self.sizes.train,
        };
        limit.min(self.scorer.task().examples(Self::split(pool)).len())
    }

    fn validation_capacity(&self) -> usize {
        self.sizes
            .validation_capacity
            .min(self.scorer.task().examples(Split::Validation).len())
            .max(self.pool_size(Pool::Validation))
    }

    fn evaluate(
        &mut self,
        c: &Candidate,
        pool: Pool,
        examples: &[usize],
    ) -> Result<Vec<ExampleResult>, EvolveError> {
        if pool != Pool::Validation {
            self.evals_used += examples.len() as u64;
        }
        if let Some(r) = self.replayed(c, pool, examples)? {
            // Logged answers and metric results serve later scoring (the report's dev scores):
            // an external scorer is never asked twice about one (prompt, example).
            for x in &r.results {
                let scored = MetricScored {
                    score: x.metric,
                    fitness: x.fitness,
                };
                self.scorer.remember(
                    &r.prompt,
                    Self::split(pool),
                    x.example,
                    &x.predicted,
                    scored,
                );
            }
            self.so_far
                .entry((c.id, pool))
                .or_default()
                .extend(r.results.iter().cloned());
            if pool == Pool::Dev {
                self.best = self.best.max(r.score);
            }
            self.progress.event(&Event::Replayed {
                examples: examples.len(),
                best: self.best,
            });
            let results = r.results.clone();
            self.records.push(r);
            return Ok(results);
        }
        let start = Instant::now();
        let split = Self::split(pool);
        let (scores, computed) = self
            .scorer
            .example_scores(&c.prompt(), split, examples, self.calibrate, self.fitness)
            .map_err(EvolveError::evaluation)?;
        let balanced = self.fitness == Fitness::Balanced && !self.scorer.task().is_generation();
        let penalty = self.length_penalty.map_or(0.0, |(l, longest)| {
            l * self.scorer.prompt_tokens(&c.prompt()).0 as f64 / longest as f64
        });
        let weights: &[f64] = if balanced {
            self.example_weights(pool)
        } else {
            &[]
        };
        let results: Vec<ExampleResult> = scores
            .into_iter()
            .map(|s| ExampleResult {
                example: s.example,
                fitness: s.fitness * weights.get(s.example).copied().unwrap_or(1.0) - penalty,
                metric: s.metric,
                predicted: s.predicted,
            })
            .collect();
        let so_far = self.so_far.entry((c.id, pool)).or_default();
        so_far.extend(results.iter().cloned());
        let so_far = so_far.clone();
        let record = EvaluationRecord {
            id: c.id,
            generation: c.generation,
            parents: c.parents.clone(),
            operator: c.operator.clone(),
            prompt: c.prompt(),
            pool,
            score: so_far.mean_fitness(),
            accuracy: so_far.mean_metric(),
            macro_f1: self.macro_f1(&so_far, split),
            n: so_far.len(),
            results: results.clone(),
            forward_passes: computed,
            seconds: start.elapsed().as_secs_f64(),
            evals_used: self.evals_used,
        };
        // Logged (and flushed) as soon as it is scored: a crash loses at most the evaluation
        // being made.
        self.log
            .append(std::slice::from_ref(&record))
            .map_err(EvolveError::record)?;
        if pool == Pool::Dev {
            self.best = self.best.max(record.score);
        }
        self.progress.event(&Event::Evaluated {
            id: c.id,
            generation: c.generation,
            operator: &c.operator,
            pool: &pool,
            accuracy: record.accuracy,
            fitness: record.score,
            n: record.n,
            examples: examples.len(),
            complete: pool != Pool::Dev || record.n >= self.sizes.dev,
            passes: self.scorer.forward_passes(),
            seconds: self.elapsed(),
            best: self.best,
        });
        self.records.push(record);
        Ok(results)
    }

    fn generation_done(
        &mut self,
        generation: usize,
        population: &[Scored],
    ) -> Result<(), EvolveError> {
        if let Some(folder) = &self.checkpoints {
            let checkpoint = Checkpoint {
                generation,
                population: population
                    .iter()
                    .map(|p| Member {
                        id: p.candidate.id,
                        score: p.score,
                    })
                    .collect(),
                candidates: self.records.len(),
                forward_passes: self.records.iter().map(|r| r.forward_passes).sum(),
                evals_used: self.evals_used,
            };
            checkpoint.write(folder).map_err(EvolveError::record)?;
        }
        if let Some(best) = population.first() {
            self.progress.event(&Event::GenerationDone {
                generation,
                best: (best.score, best.candidate.id, best.accuracy),
                seconds: self.elapsed(),
            });
        }
        Ok(())
    }
}
