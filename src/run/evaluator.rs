//! The evaluator a strategy queries: scores candidates on dev with the [`Scorer`], never scores a
//! prompt twice, logs every candidate to `evaluations.jsonl`, and reports progress on stderr.

use std::collections::HashMap;
use std::time::Instant;

use crate::evolve::{Candidate, Evaluator, EvolveError, Scored};
use crate::run::folder::{RunFolder, CHECKPOINT_FILE};
use crate::run::log::{EvaluationLog, EvaluationRecord};
use crate::score::Scorer;
use crate::task::Split;

/// Scores candidates on the dev split and logs them.
pub struct RunEvaluator<'s, 'm> {
    scorer: &'s mut Scorer<'m>,
    log: EvaluationLog,
    dev_limit: Option<usize>,
    calibrate: bool,
    quiet: bool,
    started: Instant,
    logged: HashMap<(u64, usize), EvaluationRecord>,
    charged: HashMap<u64, usize>,
    evals_used: u64,
    checkpoints: Option<RunFolder>,
    progress: Option<indicatif::ProgressBar>,
    best: f64,
    /// Every record of the run (replayed and new), in id order.
    pub records: Vec<EvaluationRecord>,
}

impl<'s, 'm> RunEvaluator<'s, 'm> {
    /// An evaluator writing to `log`.
    pub fn new(
        scorer: &'s mut Scorer<'m>,
        log: EvaluationLog,
        dev_limit: Option<usize>,
        calibrate: bool,
        quiet: bool,
    ) -> Self {
        Self {
            scorer,
            log,
            dev_limit,
            calibrate,
            quiet,
            started: Instant::now(),
            logged: HashMap::new(),
            charged: HashMap::new(),
            evals_used: 0,
            checkpoints: None,
            progress: None,
            best: f64::NEG_INFINITY,
            records: Vec::new(),
        }
    }

    /// Replays these logged evaluations (of an interrupted run) instead of scoring them again.
    pub fn with_logged(mut self, logged: Vec<EvaluationRecord>) -> Self {
        self.logged = logged.into_iter().map(|r| ((r.id, r.dev_n), r)).collect();
        self
    }

    /// Writes `checkpoint.json` (population, counters) atomically into `folder` after every
    /// generation.
    pub fn with_checkpoints(mut self, folder: RunFolder) -> Self {
        self.checkpoints = Some(folder);
        self
    }

    /// Shows a progress bar on stderr (when it is a terminal and not quiet) sized for about
    /// `passes` example forward passes; otherwise progress is one plain line per candidate.
    pub fn with_progress(mut self, passes: u64) -> Self {
        use std::io::IsTerminal;
        if !self.quiet && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(passes);
            let style = indicatif::ProgressStyle::with_template(
                "gen {prefix} [{bar:30}] {pos}/{len} passes, {per_sec}, best dev {msg}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_prefix("0");
            self.progress = Some(bar);
        }
        self
    }

    /// Seconds since the evaluator was made.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl RunEvaluator<'_, '_> {
    /// Charges the budget for scoring candidate `id` on `n` examples (only the examples not
    /// charged before), as the search does; returns the total so far.
    fn charge(&mut self, id: u64, n: usize) -> u64 {
        let before = self.charged.insert(id, n).unwrap_or(0);
        self.evals_used += n.saturating_sub(before) as u64;
        self.evals_used
    }
}

impl Evaluator for RunEvaluator<'_, '_> {
    fn dev_size(&self) -> usize {
        let dev = self.scorer.task().dev.len();
        self.dev_limit.map_or(dev, |l| l.min(dev))
    }

    fn evaluate(&mut self, candidates: &[Candidate], n: usize) -> Result<Vec<f64>, EvolveError> {
        let mut scores = Vec::with_capacity(candidates.len());
        for c in candidates {
            let prompt = c.prompt();
            self.charge(c.id, n);
            if let Some(r) = self.logged.remove(&(c.id, n)) {
                if r.prompt != prompt {
                    return Err(EvolveError::evaluation(format!(
                        "the run log does not match this run: candidate #{} was {:?}, now {:?} (the task, pool or promptevo version changed); start a new run",
                        c.id, r.prompt, prompt
                    )));
                }
                scores.push(r.dev_score);
                self.best = self.best.max(r.dev_score);
                if let Some(bar) = &self.progress {
                    bar.inc(r.dev_n as u64);
                }
                self.records.push(r);
                continue;
            }
            let ev = self
                .scorer
                .evaluate(&prompt, Split::Dev, Some(n), self.calibrate)
                .map_err(EvolveError::evaluation)?;
            scores.push(ev.accuracy);
            let record = EvaluationRecord {
                id: c.id,
                generation: c.generation,
                parents: c.parents.clone(),
                operator: c.operator.clone(),
                prompt,
                dev_score: ev.accuracy,
                dev_macro_f1: ev.macro_f1,
                dev_n: ev.n,
                forward_passes: ev.forward_passes,
                seconds: ev.seconds,
                evals_used: self.evals_used,
            };
            // Logged (and flushed) as soon as it is scored: a crash loses at most the candidate
            // being scored.
            self.log
                .append(std::slice::from_ref(&record))
                .map_err(EvolveError::evaluation)?;
            self.records.push(record);
            self.best = self.best.max(ev.accuracy);
            if let Some(bar) = &self.progress {
                bar.inc(ev.forward_passes as u64);
                bar.set_message(format!("{:.1}%", 100.0 * self.best));
            } else if !self.quiet {
                let passes = self.scorer.forward_passes();
                eprintln!(
                    "  #{:<4} gen {} {:<10} dev {:>5.1}%  [{} passes, {:.1} ex/s]",
                    c.id,
                    c.generation,
                    c.operator,
                    100.0 * ev.accuracy,
                    passes,
                    passes as f64 / self.elapsed().max(1e-9)
                );
            }
        }
        Ok(scores)
    }

    fn generation_done(
        &mut self,
        generation: usize,
        population: &[Scored],
    ) -> Result<(), EvolveError> {
        if let Some(folder) = &self.checkpoints {
            let checkpoint = serde_json::json!({
                "generation": generation,
                "population": population.iter().map(|p| serde_json::json!({"id": p.candidate.id, "score": p.score})).collect::<Vec<_>>(),
                "candidates": self.records.len(),
                "forward_passes": self.records.iter().map(|r| r.forward_passes).sum::<usize>(),
            });
            folder
                .write_json(CHECKPOINT_FILE, &checkpoint)
                .map_err(EvolveError::evaluation)?;
        }
        if let Some(bar) = &self.progress {
            bar.set_prefix((generation + 1).to_string());
        } else if !self.quiet {
            if let Some(best) = population.first() {
                eprintln!(
                    "generation {generation} done: best dev {:.1}% (#{}), {:.0} s elapsed",
                    100.0 * best.score,
                    best.candidate.id,
                    self.elapsed()
                );
            }
        }
        Ok(())
    }
}

impl Drop for RunEvaluator<'_, '_> {
    fn drop(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
    }
}
