//! Tasks: what to optimise a prompt for. A task file (TOML) names its data splits, the template
//! around the prompt, the labels and their verbalisers, and the initial prompts.

pub mod data;
pub mod metrics;
pub mod template;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use data::Example;
pub use template::Template;

use crate::error::{Error, Result};

/// The kind of answer a task expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Pick one of a fixed set of labels, scored by label log-likelihood.
    Classification,
}

/// A data split.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Demonstrations and pools; never scored.
    Train,
    /// Scored during optimisation.
    Dev,
    /// Held out: scored only for reports.
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    #[serde(default)]
    description: String,
    kind: TaskKind,
    template: String,
    labels: Vec<String>,
    #[serde(default)]
    verbalizers: Option<Vec<String>>,
    #[serde(default)]
    calibrate: bool,
    #[serde(default = "default_content_free")]
    content_free_input: String,
    initial_prompts: Vec<String>,
    data: DataPaths,
}

fn default_content_free() -> String {
    "N/A".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataPaths {
    train: Option<PathBuf>,
    dev: PathBuf,
    test: PathBuf,
}

/// A loaded, validated task.
#[derive(Clone, Debug, Serialize)]
pub struct Task {
    /// Short name (used in run folder names).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// The task file it came from.
    pub path: PathBuf,
    /// What kind of answer it expects.
    pub kind: TaskKind,
    /// The text around the prompt and each input.
    pub template: Template,
    /// Gold label strings, as they appear in the data's `target`.
    pub labels: Vec<String>,
    /// The continuation scored for each label (same order as `labels`).
    pub verbalizers: Vec<String>,
    /// Whether to apply contextual calibration.
    pub calibrate: bool,
    /// The content-free input used for calibration.
    pub content_free_input: String,
    /// Initial prompts; the first is "the initial prompt" of reports.
    pub initial_prompts: Vec<String>,
    /// Training examples (may be empty).
    pub train: Vec<Example>,
    /// Development examples (scored during optimisation).
    pub dev: Vec<Example>,
    /// Test examples (held out).
    pub test: Vec<Example>,
    #[serde(skip)]
    gold_dev: Vec<usize>,
    #[serde(skip)]
    gold_test: Vec<usize>,
}

impl Task {
    /// Loads a task file and its data; relative data paths are relative to the task file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        let file: TaskFile = toml::from_str(&text).map_err(|e| {
            let msg = e.message().to_string();
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            Error::task(
                path,
                format!(
                    "invalid task file{}: {msg}",
                    line.map(|l| format!(" (line {l})")).unwrap_or_default()
                ),
            )
        })?;
        let template =
            Template::new(&file.template).map_err(|e| Error::task(path, e.to_string()))?;
        if file.labels.is_empty() {
            return Err(Error::task(path, "`labels` is empty: list the label strings of the data's `target` field, e.g. labels = [\"negative\", \"positive\"]"));
        }
        let verbalizers = match file.verbalizers {
            Some(v) => v,
            None => file.labels.iter().map(|l| format!(" {l}")).collect(),
        };
        if verbalizers.len() != file.labels.len() {
            return Err(Error::task(path, format!("`verbalizers` has {} entries but `labels` has {}: give one verbaliser per label", verbalizers.len(), file.labels.len())));
        }
        if verbalizers.iter().any(|v| v.trim().is_empty()) {
            return Err(Error::task(path, "a verbaliser is empty: each label needs a non-empty continuation such as \" positive\""));
        }
        let initial_prompts: Vec<String> = file
            .initial_prompts
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if initial_prompts.is_empty() {
            return Err(Error::task(
                path,
                "`initial_prompts` is empty: give at least one prompt to start from",
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let load = |p: &Path| data::load_jsonl(&base.join(p));
        let train = match &file.data.train {
            Some(p) => load(p)?,
            None => Vec::new(),
        };
        let dev = load(&file.data.dev)?;
        let test = load(&file.data.test)?;
        let gold = |split: &[Example], p: &Path| -> Result<Vec<usize>> {
            split
                .iter()
                .map(|ex| {
                    file.labels.iter().position(|l| *l == ex.target).ok_or_else(|| Error::Jsonl {
                        path: base.join(p),
                        line: ex.id + 1,
                        message: format!("target \"{}\" is not one of the task's labels {:?}; fix the data or the task's `labels`", ex.target, file.labels),
                    })
                })
                .collect()
        };
        let gold_dev = gold(&dev, &file.data.dev)?;
        let gold_test = gold(&test, &file.data.test)?;
        Ok(Self {
            name: file.name,
            description: file.description,
            path: path.to_path_buf(),
            kind: file.kind,
            template,
            labels: file.labels,
            verbalizers,
            calibrate: file.calibrate,
            content_free_input: file.content_free_input,
            initial_prompts,
            train,
            dev,
            test,
            gold_dev,
            gold_test,
        })
    }

    /// The examples of a split.
    pub fn examples(&self, split: Split) -> &[Example] {
        match split {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// A train example written as a demonstration with the task's template: the text after
    /// `{prompt}`, with the input filled in and the answer appended (the label's verbaliser for
    /// classification), e.g. "Review: a gem\nSentiment: positive".
    pub fn demonstration(&self, example: &Example) -> String {
        let (before, after) = self.template.split("");
        let answer = self
            .labels
            .iter()
            .position(|l| *l == example.target)
            .and_then(|i| self.verbalizers.get(i))
            .map_or_else(|| format!(" {}", example.target.trim()), |v| v.clone());
        format!("{}{}{after}{answer}", before.trim_start(), example.input)
    }

    /// Gold label indices of a split's examples (train labels are computed on demand).
    pub fn gold(&self, split: Split) -> Vec<usize> {
        match split {
            Split::Dev => self.gold_dev.clone(),
            Split::Test => self.gold_test.clone(),
            Split::Train => self
                .train
                .iter()
                .map(|e| self.labels.iter().position(|l| *l == e.target).unwrap_or(0))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_task(dir: &Path, template: &str, labels: &str) -> PathBuf {
        std::fs::write(
            dir.join("d.jsonl"),
            "{\"input\": \"good\", \"target\": \"positive\"}\n",
        )
        .unwrap();
        let p = dir.join("t.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"t\"\nkind = \"classification\"\ntemplate = \"{template}\"\nlabels = {labels}\ninitial_prompts = [\"Say it.\"]\n[data]\ndev = \"d.jsonl\"\ntest = \"d.jsonl\"\n"
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn loads_a_valid_task_with_default_verbalizers() {
        let dir = tempfile::tempdir().unwrap();
        let t = Task::load(&write_task(
            dir.path(),
            "{prompt} {input} A:",
            "[\"negative\", \"positive\"]",
        ))
        .unwrap();
        assert_eq!(t.verbalizers, vec![" negative", " positive"]);
        assert_eq!(t.gold(Split::Dev), vec![1]);
    }

    #[test]
    fn template_without_input_is_rejected_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Task::load(&write_task(
            dir.path(),
            "{prompt} A:",
            "[\"negative\", \"positive\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.toml") && err.contains("add {input}"),
            "{err}"
        );
    }

    #[test]
    fn empty_label_list_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = Task::load(&write_task(dir.path(), "{prompt} {input}", "[]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`labels` is empty"), "{err}");
    }

    #[test]
    fn unknown_target_names_the_data_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = Task::load(&write_task(
            dir.path(),
            "{prompt} {input}",
            "[\"a\", \"b\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("d.jsonl:1:"), "{err}");
    }

    #[test]
    fn shipped_tasks_load() {
        for name in ["sst2", "subj", "trec", "agnews"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("experiments/tasks/{name}.toml"));
            let t = Task::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!t.dev.is_empty() && !t.test.is_empty() && !t.initial_prompts.is_empty());
        }
    }
}
