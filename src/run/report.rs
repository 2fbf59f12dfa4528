//! The human-readable `report.md` of a run: which prompt won, by how much, on dev and held-out test.

use serde::{Deserialize, Serialize};

use super::analysis::{self, GenerationStats, Headroom, LineageStep, MoveFamilies, OperatorStats};
use super::folder::{RunFolder, REPORT_FILE, RESULT_FILE};
use super::log::EvaluationRecord;
use crate::error::Result;
use crate::evolve::choice::FinalChoice;

/// Scores of one prompt on dev and test.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptResult {
    /// Candidate id in the run's log.
    pub id: u64,
    /// The prompt text.
    pub prompt: String,
    /// Dev accuracy (the fitness the search used).
    pub dev_accuracy: f64,
    /// Dev accuracy with contextual calibration.
    pub dev_accuracy_calibrated: f64,
    /// Test accuracy, without calibration.
    pub test_accuracy: f64,
    /// Test macro-F1, without calibration.
    pub test_macro_f1: f64,
    /// Test accuracy with contextual calibration.
    pub test_accuracy_calibrated: f64,
    /// 95% bootstrap interval of the test accuracy.
    pub test_ci: (f64, f64),
    /// Test balanced accuracy (mean per-class recall; classification only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_balanced_accuracy: Option<f64>,
}

/// How many examples of each label one split holds (classification tasks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitBalance {
    /// The split ("dev", "validation", "test").
    pub split: String,
    /// Examples of this split the run used.
    pub n: usize,
    /// (label, examples) in label order.
    pub counts: Vec<(String, usize)>,
}

/// Everything `report.md` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Task name.
    pub task: String,
    /// Task description.
    pub description: String,
    /// Model name.
    pub model: String,
    /// Seed of the run.
    pub seed: u64,
    /// Strategy name.
    pub strategy: String,
    /// Whether fitness used calibrated scores.
    pub calibrate: bool,
    /// Dev examples per candidate.
    pub dev_n: usize,
    /// Test examples scored for the report.
    pub test_n: usize,
    /// Majority-class rate on those test examples.
    pub test_majority: f64,
    /// Candidates evaluated.
    pub candidates: usize,
    /// Example forward passes spent on dev scoring.
    pub forward_passes: u64,
    /// Wall-clock seconds of the search (excluding the final test scoring).
    pub search_seconds: f64,
    /// CPU seconds of the search, every thread (excluding the final test scoring; of a
    /// resumed run, the part after the resume).
    #[serde(default)]
    pub search_cpu_seconds: Option<f64>,
    /// Peak resident memory (MB) of the process during the search.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// The task's first initial prompt.
    pub initial: PromptResult,
    /// The best prompt on dev.
    pub best: PromptResult,
    /// The ten best distinct prompts on dev: (id, dev score, operator, prompt).
    pub top: Vec<(u64, f64, String, String)>,
    /// 95% paired-bootstrap interval of (best - initial) test accuracy.
    pub test_change_ci: (f64, f64),
    /// Dev scores per generation (from the log).
    #[serde(default)]
    pub generations: Vec<GenerationStats>,
    /// Operator success (from the log).
    #[serde(default)]
    pub operators: Vec<OperatorStats>,
    /// The best prompt's ancestors, oldest first (from the log).
    #[serde(default)]
    pub lineage: Vec<LineageStep>,
    /// Example forward passes charged to the budget (racing charges fewer than
    /// candidates x dev examples).
    #[serde(default)]
    pub evals_used: u64,
    /// Why the search ended.
    #[serde(default)]
    pub stop: String,
    /// Replies the model gave to operators.
    #[serde(default)]
    pub model_replies: u64,
    /// Model replies that operators rejected (empty, too long, placeholders).
    #[serde(default)]
    pub rejected_replies: u64,
    /// The per-example fitness the search maximised (accuracy, margin or prob).
    #[serde(default)]
    pub fitness: String,
    /// The headline metric the scores are in: "accuracy" (classification) or the generation
    /// task's metric (exact, set, number, ...); empty in reports written before it existed.
    #[serde(default)]
    pub metric: String,
    /// Children that paired screening stopped after a minibatch.
    #[serde(default)]
    pub screened_out: u64,
    /// Example evaluations spent on validation (not charged to the budget).
    #[serde(default)]
    pub validation_evals: u64,
    /// Id of the best candidate on dev (the answer may differ: it is chosen on validation).
    #[serde(default)]
    pub dev_best_id: u64,
    /// How the answer was chosen on validation (None: it is the best on dev).
    #[serde(default)]
    pub final_choice: Option<FinalChoice>,
    /// Dev sampling noise beside the spread of candidate scores (from the log).
    #[serde(default)]
    pub headroom: Option<Headroom>,
    /// The label counts of the dev, validation and test examples the run used (empty for
    /// generation tasks): a split whose balance differs from test is a warning sign that
    /// accuracy there will not carry over (`--fitness balanced` is the remedy).
    #[serde(default)]
    pub class_balance: Vec<SplitBalance>,
    /// Prompt length against score: the fronts and the shortest answer within one standard
    /// error of the chosen one (None in runs made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<super::length::LengthReport>,
    /// How an inference server scored and wrote (None: everything ran in process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<crate::score::BackendInfo>,
    /// The adaptive strategy's children per move family and generation, with their wins
    /// (from the log; None for other strategies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_families: Option<MoveFamilies>,
    /// `fewshot-gepa`'s stage order and the probe that decided it (from the log; None for
    /// other strategies and when no probe ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_order: Option<analysis::StageOrder>,
}

/// Rejected model replies below which no warning is given, however few replies there were.
const MIN_REJECTED_TO_WARN: u64 = 3;

/// The plots a report links to.
pub(crate) const PLOTS: [&str; 3] = ["generations.svg", "progress.svg", "operators.svg"];

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn delta(a: f64, b: f64) -> String {
    format!("{:+.1} pts", 100.0 * (b - a))
}

impl Report {
    /// A finished run's result.json from `folder`; None when the run has not finished. A file
    /// that is not a result fails with one line naming it and the fix (resume the run).
    pub fn read(folder: &RunFolder) -> Result<Option<Self>> {
        folder.read_json(
            RESULT_FILE,
            "a promptevo result",
            "resume the run to write it again",
        )
    }

    /// Recomputes everything the log alone tells (generations, operators, lineage, top prompts).
    pub(crate) fn analyse(&mut self, records: &[EvaluationRecord]) {
        self.move_families =
            (self.strategy == "adaptive").then(|| analysis::move_families(records, self.dev_n));
        self.stage_order = (self.strategy == "fewshot-gepa")
            .then(|| analysis::stage_order(records, self.dev_n))
            .flatten();
        let records = &analysis::latest_per_candidate(records);
        self.headroom = analysis::headroom(records, self.dev_n);
        self.generations = analysis::generation_stats(records);
        self.operators = analysis::operator_stats(records);
        self.lineage = analysis::lineage(records, self.best.id);
        let mut top: Vec<_> = records
            .iter()
            .filter(|r| r.n >= self.dev_n)
            .map(|r| (r.id, r.accuracy, r.operator.clone(), r.prompt.clone()))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(10);
        self.top = top;
        self.candidates = records.len();
    }

    /// Writes `result.json`, `report.md`, `best.txt` and the SVG plots into the run folder.
    pub fn write(&mut self, folder: &RunFolder, records: &[EvaluationRecord]) -> Result<()> {
        self.analyse(records);
        let records = &analysis::latest_per_candidate(records);
        super::plots::generations(&folder.file(PLOTS[0]), &self.generations)?;
        super::plots::progress(&folder.file(PLOTS[1]), &analysis::progress(records))?;
        super::plots::operators(&folder.file(PLOTS[2]), &self.operators)?;
        folder.write("best.txt", format!("{}\n", self.best.prompt).as_bytes())?;
        if let Some(l) = &self.length {
            folder.write(
                "best-short.txt",
                format!("{}\n", l.best_short_prompt).as_bytes(),
            )?;
        }
        folder.write_json(RESULT_FILE, self)?;
        let markdown = self.to_markdown();
        folder.write(
            "report.html",
            to_html(&markdown, &self.task, folder)?.as_bytes(),
        )?;
        folder.write(REPORT_FILE, markdown.as_bytes())
    }

    /// "; CPU time 412 s, peak memory 388 MB" where the run measured them.
    fn cost_text(&self) -> String {
        let mut s = String::new();
        if let Some(cpu) = self.search_cpu_seconds {
            s += &format!("; CPU time {cpu:.0} s");
        }
        if let Some(mb) = self.peak_rss_mb {
            s += &format!("; peak memory {mb:.0} MB");
        }
        s
    }

    /// The report as Markdown.
    pub(crate) fn to_markdown(&self) -> String {
        let (i, b) = (&self.initial, &self.best);
        let mut s = String::new();
        s += &format!("# promptevo run: {}\n\n", self.task);
        s += &format!("{}\n\n", self.description);
        s += &format!(
            "- model: `{}`\n- metric: {}\n- strategy: {} (seed {})\n- fitness: {} on {} dev examples{}\n- candidates evaluated: {}; example forward passes: {}; search time {:.1} s ({:.1} examples/s){}\n- test: first {} examples of the test split (majority-class rate {})\n\n",
            self.model,
            if self.metric.is_empty() { "accuracy" } else { &self.metric },
            self.strategy,
            self.seed,
            match (self.metric.as_str(), self.fitness.as_str()) {
                ("" | "accuracy", "" | "accuracy") => "accuracy".to_string(),
                ("" | "accuracy", "margin") =>
                    "gold-label log-prob margin (reports show accuracy)".to_string(),
                ("" | "accuracy", "balanced") =>
                    "balanced accuracy (0/1 weighted by the inverse of each class's share; the final choice compares it too)".to_string(),
                ("" | "accuracy", _) =>
                    "gold-label probability over the labels (reports show accuracy)".to_string(),
                (metric, _) => format!(
                    "the `{metric}` metric's partial credit (reports show its score, named acc below)"
                ),
            },
            self.dev_n,
            if self.calibrate { ", contextually calibrated" } else { "" },
            self.candidates,
            self.forward_passes,
            self.search_seconds,
            self.forward_passes as f64 / self.search_seconds.max(1e-9),
            self.cost_text(),
            self.test_n,
            pct(self.test_majority)
        );
        let full = self.candidates as u64 * self.dev_n as u64;
        s += &format!(
            "- budget: {} example evaluations charged{}; stopped because: {}{}\n",
            self.evals_used,
            if self.evals_used < full {
                format!(
                    " ({} fewer than {} candidates x {} dev examples: {} children stopped by paired screening, others by racing or the budget; train probes are charged too)",
                    full - self.evals_used,
                    self.candidates,
                    self.dev_n,
                    self.screened_out
                )
            } else {
                String::new()
            },
            if self.stop.is_empty() {
                "-"
            } else {
                &self.stop
            },
            if self.rejected_replies > 0 {
                format!(
                    "; {} of {} model replies rejected by cleaning",
                    self.rejected_replies, self.model_replies
                )
            } else {
                String::new()
            }
        );
        if let Some(warning) = self.rejected_replies_warning() {
            s += &format!("\n> **Warning:** {warning}\n\n");
        }
        s += &format!(
            "- validation: {} example evaluations for the final choice (not charged to the budget)\n\n",
            self.validation_evals
        );
        s += &self.balance_markdown();
        if let Some(b) = &self.backend {
            s += &format!(
                "## Backend\n\n- {} {}{}\n- scoring method: {}\n",
                b.kind,
                b.model,
                b.url
                    .as_ref()
                    .map(|u| format!(" at {u}"))
                    .unwrap_or_default(),
                b.scoring_method
            );
            for n in &b.notes {
                s += &format!("- not guaranteed: {n}\n");
            }
            s += "\n";
        }
        s += "## Result\n\n";
        s += "| | dev acc | dev acc (calibrated) | test acc [95% CI] | test macro-F1 | test acc (calibrated) |\n|---|---|---|---|---|---|\n";
        for (name, r) in [("initial", i), ("best", b)] {
            s += &format!(
                "| {name} (#{}) | {} | {} | {} [{}, {}] | {:.3} | {} |\n",
                r.id,
                pct(r.dev_accuracy),
                pct(r.dev_accuracy_calibrated),
                pct(r.test_accuracy),
                pct(r.test_ci.0),
                pct(r.test_ci.1),
                r.test_macro_f1,
                pct(r.test_accuracy_calibrated)
            );
        }
        s += &format!(
            "| change | {} | {} | {} | {:+.3} | {} |\n\n",
            delta(i.dev_accuracy, b.dev_accuracy),
            delta(i.dev_accuracy_calibrated, b.dev_accuracy_calibrated),
            delta(i.test_accuracy, b.test_accuracy),
            b.test_macro_f1 - i.test_macro_f1,
            delta(i.test_accuracy_calibrated, b.test_accuracy_calibrated)
        );
        s += &format!(
            "Test accuracy change, best - initial: {} (95% paired bootstrap interval [{:+.1}, {:+.1}] pts, {} resamples over the {} test examples).\n\n",
            delta(i.test_accuracy, b.test_accuracy),
            100.0 * self.test_change_ci.0,
            100.0 * self.test_change_ci.1,
            analysis::BOOTSTRAP_RESAMPLES,
            self.test_n
        );
        if let (Some(ib), Some(bb)) = (i.test_balanced_accuracy, b.test_balanced_accuracy) {
            s += &format!(
                "Test balanced accuracy (mean per-class recall): initial {}, best {} ({}).\n\n",
                pct(ib),
                pct(bb),
                delta(ib, bb)
            );
        }
        s += &format!(
            "**Initial prompt** (#{}):\n\n> {}\n\n**Best prompt** (#{}):\n\n> {}\n\n",
            i.id,
            i.prompt.replace('\n', "\n> "),
            b.id,
            b.prompt.replace('\n', "\n> ")
        );
        s += &self.choice_markdown();
        s += &self.length_markdown();
        s += &self.headroom_markdown();
        s += "## How the best prompt was born\n\n| step | id | operator | dev acc | change vs best parent | prompt |\n|---|---|---|---|---|---|\n";
        for (k, st) in self.lineage.iter().enumerate() {
            s += &format!(
                "| {k} | {} | {} | {} | {} | {} |\n",
                st.id,
                st.operator,
                pct(st.score),
                delta(0.0, st.change),
                st.prompt.replace('|', "\\|")
            );
        }
        s += "\n## Operators\n\n| operator | children | beat best parent | mean change |\n|---|---|---|---|\n";
        for o in &self.operators {
            s += &format!(
                "| {} | {} | {} | {} |\n",
                o.operator,
                o.applied,
                o.improved,
                delta(0.0, o.mean_gain)
            );
        }
        s += &self.families_markdown();
        s += &self.stage_order_markdown();
        s += "\n## Plots\n\n";
        for p in PLOTS {
            s += &format!("![{p}]({p})\n\n");
        }
        s += "## Top prompts on dev\n\n| id | dev acc | operator | prompt |\n|---|---|---|---|\n";
        for (id, score, op, prompt) in &self.top {
            s += &format!(
                "| {id} | {} | {op} | {} |\n",
                pct(*score),
                prompt.replace('|', "\\|")
            );
        }
        s
    }
}

impl Report {
    /// A warning when most of the model's replies were unusable, so that the model-driven
    /// operators barely searched (None when they mostly worked or the model was not asked).
    pub(crate) fn rejected_replies_warning(&self) -> Option<String> {
        (self.rejected_replies >= MIN_REJECTED_TO_WARN
            && self.rejected_replies * 2 >= self.model_replies)
            .then(|| {
                format!(
                    "{} of {} replies from the mutator model were rejected (empty, too long, or holding {{input}}/{{prompt}}), so its operators made few or no children; use an instruction-tuned --mutator-model or a strategy without model-driven operators",
                    self.rejected_replies, self.model_replies
                )
            })
    }

    /// The "final choice" section: the finalists on dev and validation and why the answer won.
    fn choice_markdown(&self) -> String {
        let Some(c) = &self.final_choice else {
            return "## Final choice\n\nNo validation split was used: the answer is the best prompt on dev.\n\n".into();
        };
        let mut s = format!(
            "## Final choice\n\nThe best initial prompt and the top {} candidates on dev were re-scored on {} validation examples the search never saw. {}.\n\n| id | operator | dev fitness | dev acc | validation fitness | validation acc | |\n|---|---|---|---|---|---|---|\n",
            c.finalists.len().saturating_sub(1),
            c.validation_n,
            capitalise(&c.reason)
        );
        for f in &c.finalists {
            let mark = if f.id == c.chosen {
                "**chosen**"
            } else if c.test.as_ref().is_some_and(|t| t.challenger == f.id) {
                "challenger"
            } else {
                ""
            };
            s += &format!(
                "| {} | {} | {:.3} | {} | {:.3} | {} | {mark} |\n",
                f.id,
                f.operator,
                f.dev_score,
                pct(f.dev_accuracy),
                f.validation_score,
                pct(f.validation_accuracy),
            );
        }
        s += "\n";
        if let Some(t) = &c.test {
            let looks: Vec<String> = t.looks.iter().map(usize::to_string).collect();
            s += &format!(
                "Paired test of the challenger #{} against the best initial prompt #{} ({}, per example; validation looked at {} examples):\n\n| evidence | better | worse | examples | change | one-sided p | needs |\n|---|---|---|---|---|---|---|\n",
                t.challenger,
                c.finalists[0].id,
                match t.criterion {
                    crate::evolve::choice::Criterion::Metric => "the task's metric",
                    crate::evolve::choice::Criterion::Fitness => "the fitness",
                },
                looks.join(" then ")
            );
            for (name, e, needs) in [
                (
                    "validation (exact sign test)",
                    &t.validation,
                    format!("< {}", t.validation_alpha),
                ),
                ("dev", &t.dev, "-".to_string()),
                (
                    "dev + validation pooled",
                    &t.pooled,
                    format!("< {}", t.pooled_alpha),
                ),
            ] {
                s += &format!(
                    "| {name} | {} | {} | {} | {:+.1} pts | {:.4} | {needs} |\n",
                    e.better,
                    e.worse,
                    e.n,
                    100.0 * e.mean_diff,
                    e.p_value
                );
            }
            s += &format!(
                "\nDecided by: {}; the challenger {}.\n\n",
                t.decided_by,
                if t.accepted { "won" } else { "did not win" }
            );
        }
        s
    }

    /// The "prompt length" section: the accuracy-vs-tokens fronts and the short answer.
    fn length_markdown(&self) -> String {
        let Some(l) = &self.length else {
            return String::new();
        };
        let unit = if l.counted {
            "tokens"
        } else {
            "tokens (estimated: 4 characters each)"
        };
        let mut s = format!(
            "## Prompt length

Every call pays for the prompt. The front: candidates that no prompt at most as long beats ({unit}).

| split | front (#id: {unit}, score) |
|---|---|
"
        );
        for (split, front) in [("dev", &l.dev_front), ("validation", &l.validation_front)] {
            if front.is_empty() {
                continue;
            }
            let points: Vec<String> = front
                .iter()
                .map(|p| format!("#{}: {}, {}", p.id, p.tokens, pct(p.score)))
                .collect();
            s += &format!(
                "| {split} | {} |
",
                points.join("; ")
            );
        }
        s += &format!(
            "
The answer #{} has {} {unit} and scores {} on {} {} examples. The shortest candidate within one standard error ({:.1} pts) of it is #{}: {} {unit}, {} (`best-short.txt`).

",
            l.chosen.id,
            l.chosen.tokens,
            pct(l.chosen.score),
            l.n,
            l.basis,
            100.0 * l.tolerance,
            l.best_short.id,
            l.best_short.tokens,
            pct(l.best_short.score)
        );
        s
    }

    /// The "stage order" section of a `fewshot-gepa` run: which stage ran first and the probe
    /// that decided it.
    fn stage_order_markdown(&self) -> String {
        let Some(o) = &self.stage_order else {
            return String::new();
        };
        let (first, second) = if o.reflection_first {
            ("reflection", "demonstrations")
        } else {
            ("demonstrations", "reflection")
        };
        let when = match o.second_stage_from {
            Some(g) => format!("{second} from generation {g}"),
            None => format!("the budget ended before {second}"),
        };
        format!(
            "\n## Stage order\n\nGeneration 1 probed {} reflective rewrites of the initial prompts against generation 0 (the initial prompts and their demonstration variants): the best rewrite #{} (dev {}) against #{} (dev {}): {}. Reflection runs first only on a lead at one-sided p < {}, so this run ran **{first} first**, then {when}.\n",
            o.probe_children,
            o.challenger.0,
            pct(o.challenger.1),
            o.incumbent.0,
            pct(o.incumbent.1),
            o.evidence.describe(),
            crate::evolve::strategies::staged::PROBE_ALPHA,
        )
    }

    /// The "move families" section of an adaptive run: per generation, each family's share
    /// of the children and how many beat their parent.
    fn families_markdown(&self) -> String {
        use crate::evolve::strategies::{MoveFamily, FAMILY_FLOOR};
        let Some(m) = &self.move_families else {
            return String::new();
        };
        let mut s = format!(
            "\n## Move families\n\nThe adaptive strategy shares each generation's children between move families by Thompson sampling on how often their children beat their parent (a paired dev gain above 0 over the best fully scored parent, on the dev examples both were scored on, as paired screening compares them), each family that can act keeping at least {:.0}% of the children over the run. Per generation: children (share of the generation's; the dev example evaluations they were charged, which screening cuts to a tenth for a child worse than its parent), then won / compared with a parent. Generation 0 is the initial population's children, drawn by operator weight before any credit.\n\n| generation |",
            100.0 * FAMILY_FLOOR
        );
        for f in MoveFamily::ALL {
            s += &format!(" {} |", f.name());
        }
        s += "\n|---|";
        s += &"---|".repeat(MoveFamily::ALL.len());
        s += "\n";
        let cell = |row: Option<&analysis::FamilyStats>| match row {
            Some(r) => format!(
                "{} ({:.0}%; {} evals), {}/{} won",
                r.children,
                100.0 * r.share,
                r.dev_evals,
                r.wins,
                r.credited
            ),
            None => "-".to_string(),
        };
        let mut generations: Vec<usize> = m.rows.iter().map(|r| r.generation).collect();
        generations.dedup();
        for g in generations {
            s += &format!("| {g} |");
            for f in MoveFamily::ALL {
                let row = m
                    .rows
                    .iter()
                    .find(|r| r.generation == g && r.family == f.name());
                s += &format!(" {} |", cell(row));
            }
            s += "\n";
        }
        let all: usize = m.rows.iter().map(|r| r.children).sum();
        s += "| all |";
        for f in MoveFamily::ALL {
            let rows: Vec<_> = m.rows.iter().filter(|r| r.family == f.name()).collect();
            let children: usize = rows.iter().map(|r| r.children).sum();
            if children == 0 {
                s += " - |";
                continue;
            }
            let credited: usize = rows.iter().map(|r| r.credited).sum();
            let wins: usize = rows.iter().map(|r| r.wins).sum();
            let evals: u64 = rows.iter().map(|r| r.dev_evals).sum();
            let gain: f64 = rows
                .iter()
                .map(|r| r.mean_gain * r.credited as f64)
                .sum::<f64>()
                / credited.max(1) as f64;
            s += &format!(
                " {children} ({:.0}%), {wins}/{credited} won ({:.0}%), {evals} dev evals, mean gain {gain:+.3} |",
                100.0 * children as f64 / all.max(1) as f64,
                100.0 * wins as f64 / credited.max(1) as f64
            );
        }
        s += &format!(
            "\n\nTrain-pool probes (error-driven demonstrations and reflection read failures from them): {} example evaluations, charged to the budget but not to a family.\n",
            m.train_probe_evals
        );
        s
    }

    /// The "class balance" section: label counts per split.
    fn balance_markdown(&self) -> String {
        let Some(first) = self.class_balance.first() else {
            return String::new();
        };
        let mut s = String::from("## Class balance\n\n| split | examples |");
        for (label, _) in &first.counts {
            s += &format!(" {label} |");
        }
        s += "\n|---|---|";
        s += &"---|".repeat(first.counts.len());
        s += "\n";
        for b in &self.class_balance {
            s += &format!("| {} | {} |", b.split, b.n);
            for (_, c) in &b.counts {
                s += &format!(" {} ({:.0}%) |", c, 100.0 * *c as f64 / b.n.max(1) as f64);
            }
            s += "\n";
        }
        s + "\n"
    }

    /// The "headroom" section: is dev large enough to tell the candidates apart?
    fn headroom_markdown(&self) -> String {
        let Some(h) = &self.headroom else {
            return String::new();
        };
        let mut s = format!(
            "## Headroom\n\nOne dev score's sampling noise: the best candidate's dev accuracy has a standard error of {:.1} pts ({} examples). The {} fully scored candidates' dev accuracies spread with a standard deviation of {:.1} pts (best {}, median {}).\n\n",
            100.0 * h.best_dev_se,
            self.dev_n,
            h.candidates,
            100.0 * h.spread_sd,
            pct(h.best),
            pct(h.median)
        );
        if let Some(w) = &h.warning {
            s += &format!("**Warning:** {w}\n\n");
        }
        s
    }
}

fn capitalise(text: &str) -> String {
    let mut c = text.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The Markdown report as one self-contained HTML page: the SVG plots are inlined, nothing is
/// fetched from the network.
fn to_html(markdown: &str, task: &str, folder: &RunFolder) -> Result<String> {
    let mut body = String::new();
    let opts = pulldown_cmark::Options::ENABLE_TABLES;
    pulldown_cmark::html::push_html(&mut body, pulldown_cmark::Parser::new_ext(markdown, opts));
    for plot in PLOTS {
        let svg = std::fs::read_to_string(folder.file(plot))
            .map_err(|e| crate::error::Error::read(folder.file(plot), e))?;
        body = body.replace(&format!("<img src=\"{plot}\" alt=\"{plot}\" />"), &svg);
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>promptevo run: {task}</title>\n<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25em .5em}}blockquote{{background:#f4f4f4;margin:0;padding:.5em 1em}}</style></head><body>\n{body}</body></html>\n"
    ))
}
