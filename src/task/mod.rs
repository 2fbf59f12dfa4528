//! Tasks: what to optimise a prompt for. A task file (TOML) names its data splits, the template
//! around the prompt, the initial prompts, and either the labels and their verbalisers
//! (classification) or the metric and decoding limits (generation), and its format (a raw
//! completion, or a chat rendered with the model's own template: see [`format`]).

pub mod data;
pub mod format;
pub mod metric;
pub mod metrics;
pub mod template;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use data::Example;
pub use format::{ChatFormat, Format};
pub use metric::MetricSpec;
pub use metrics::Fitness;
pub use template::Template;

use crate::error::{line_of, Error, Result};

/// The kind of answer a task expects, carrying what scoring that kind needs (so a
/// classification task cannot hold a generation spec, nor the reverse).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Pick one of a fixed set of labels, scored by label log-likelihood.
    Classification(ClassificationSpec),
    /// Write a short answer, decoded greedily and compared with the accepted answers.
    Generation(GenerationSpec),
}

/// The task file's `kind` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindName {
    Classification,
    Generation,
}

/// How a classification task's labels are scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationSpec {
    /// Gold label strings, as they appear in the data's `target`.
    pub labels: Vec<String>,
    /// The continuation scored for each label (same order as `labels`).
    pub verbalizers: Vec<String>,
    /// Whether to apply contextual calibration.
    pub calibrate: bool,
    /// The content-free input used for calibration.
    pub content_free_input: String,
}

/// How a generation task's answers are decoded and scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerationSpec {
    /// How an answer is compared with the example's accepted answers.
    pub metric: MetricSpec,
    /// Most tokens decoded per answer.
    pub max_new_tokens: usize,
    /// Decoding stops at the first of these (excluded from the answer).
    pub stop: Vec<String>,
}

/// Most train examples carved off for validation when a task has no `validation` file (at most
/// a third of train is taken, so the demonstrations keep a pool).
pub(crate) const VALIDATION_CARVE: usize = 200;

/// Default answer length of generation tasks: enough for a word or a short phrase.
const DEFAULT_MAX_NEW_TOKENS: usize = 16;

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
    /// Never seen by the search: scored once at its end to choose the answer (the task's
    /// `validation` file, else carved from the end of train).
    Validation,
    /// Held out: scored only for reports.
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Validation => "validation",
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
    kind: KindName,
    #[serde(default)]
    format: FormatName,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    /// A metric name, or a table with `name` and the metric's parameters.
    #[serde(default)]
    metric: Option<toml::Value>,
    #[serde(default)]
    max_new_tokens: Option<usize>,
    #[serde(default)]
    stop: Option<Vec<String>>,
    #[serde(default)]
    verbalizers: Option<Vec<String>>,
    #[serde(default)]
    calibrate: Option<bool>,
    #[serde(default)]
    content_free_input: Option<String>,
    initial_prompts: Vec<String>,
    data: DataPaths,
}

/// The content-free input of a classification task that names none.
const DEFAULT_CONTENT_FREE: &str = "N/A";

/// The task file's `format` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatName {
    /// The `template` around prompt and input (today's behaviour).
    #[default]
    Completion,
    /// `system` and `user` messages through the model's chat template.
    Chat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataPaths {
    train: Option<PathBuf>,
    #[serde(default)]
    validation: Option<PathBuf>,
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
    /// What kind of answer it expects, with its labels or its metric and decoding.
    pub kind: TaskKind,
    /// How prompt and input become the model's text: the `template` (completion), or chat
    /// messages rendered through the scoring model's chat template.
    pub format: Format,
    /// Completion: the text around the prompt and each input. Chat: a plain-text stand-in (the
    /// `system` template, a blank line, the `user` template) for readers of the task; scoring
    /// renders [`Task::format`] instead.
    pub template: Template,
    /// Initial prompts; the first is "the initial prompt" of reports.
    pub initial_prompts: Vec<String>,
    /// Training examples (may be empty); the demonstrations' pool. Without a `validation`
    /// file, the examples carved off for validation are not among them.
    pub train: Vec<Example>,
    /// Validation examples: the task's `validation` file, else the last
    /// [`VALIDATION_CARVE`] train examples (at most a third of train), renumbered from 0.
    pub validation: Vec<Example>,
    /// Development examples (scored during optimisation).
    pub dev: Vec<Example>,
    /// Test examples (held out).
    pub test: Vec<Example>,
    #[serde(skip)]
    gold_dev: Vec<usize>,
    #[serde(skip)]
    gold_validation: Vec<usize>,
    #[serde(skip)]
    gold_test: Vec<usize>,
}

/// A parse error's message with the fix where the message alone does not say it: a missing key
/// is named, but not what to write there.
fn with_fix(msg: String) -> String {
    if msg.starts_with("missing field `kind`") {
        format!("{msg}: add kind = \"classification\" (the labels are scored by log-probability) or kind = \"generation\" (the model writes the answer, scored by `metric`)")
    } else if msg.starts_with("missing field") {
        format!("{msg}: add it (see a shipped task in experiments/tasks/ and the README's \"Tasks\" section)")
    } else {
        msg
    }
}

/// `text` on one line: its lines joined with "; " (empty ones dropped).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Task {
    /// Loads a task file and its data; relative data paths are relative to the task file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        let file: TaskFile = toml::from_str(&text).map_err(|e| {
            // toml's messages can span lines (and quote the file's own text): keep one line.
            let msg = with_fix(one_line(e.message()));
            let line = e.span().map(|s| line_of(&text, s.start));
            Error::task(
                path,
                format!(
                    "invalid task file{}: {msg}",
                    line.map(|l| format!(" (line {l})")).unwrap_or_default()
                ),
            )
        })?;
        let (format, template) = task_format(path, &file)?;
        let kind = match file.kind {
            KindName::Classification => {
                TaskKind::Classification(classification_spec(path, &file, &format)?)
            }
            KindName::Generation => TaskKind::Generation(generation_spec(path, &file, &format)?),
        };
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
        let mut train = match &file.data.train {
            Some(p) => load(p)?,
            None => Vec::new(),
        };
        let (validation, validation_path) = match &file.data.validation {
            Some(p) => (load(p)?, p.clone()),
            None => {
                let n = VALIDATION_CARVE.min(train.len() / 3);
                let carved = train.split_off(train.len() - n);
                (carved, file.data.train.clone().unwrap_or_default())
            }
        };
        let dev = load(&file.data.dev)?;
        let test = load(&file.data.test)?;
        let gold = |split: &[Example], p: &Path| -> Result<Vec<usize>> {
            let labels = match &kind {
                TaskKind::Generation(spec) => {
                    check_targets(&spec.metric, split, &base.join(p))?;
                    return Ok(Vec::new());
                }
                TaskKind::Classification(spec) => &spec.labels,
            };
            split
                .iter()
                .map(|ex| {
                    labels.iter().position(|l| *l == ex.target).ok_or_else(|| Error::Line {
                        path: base.join(p),
                        line: ex.line,
                        message: format!("target {:?} is not one of the task's labels {:?}; fix the data or the task's `labels`", ex.target, labels),
                    })
                })
                .collect()
        };
        let gold_dev = gold(&dev, &file.data.dev)?;
        let gold_validation = gold(&validation, &validation_path)?;
        let validation = validation
            .into_iter()
            .enumerate()
            .map(|(id, e)| Example { id, ..e })
            .collect();
        let gold_test = gold(&test, &file.data.test)?;
        if let (TaskKind::Generation(spec), Some(p)) = (&kind, &file.data.train) {
            check_targets(&spec.metric, &train, &base.join(p))?;
        }
        Ok(Self {
            name: file.name,
            description: file.description,
            path: path.to_path_buf(),
            kind,
            format,
            template,
            initial_prompts,
            train,
            validation,
            dev,
            test,
            gold_dev,
            gold_validation,
            gold_test,
        })
    }

    /// Whether answers are generated (rather than picked among labels).
    pub fn is_generation(&self) -> bool {
        matches!(self.kind, TaskKind::Generation(_))
    }

    /// Decoding and metric of a generation task (`None` for classification).
    pub fn generation(&self) -> Option<&GenerationSpec> {
        match &self.kind {
            TaskKind::Generation(spec) => Some(spec),
            TaskKind::Classification(_) => None,
        }
    }

    /// Labels and calibration of a classification task (`None` for generation).
    pub fn classification(&self) -> Option<&ClassificationSpec> {
        match &self.kind {
            TaskKind::Classification(spec) => Some(spec),
            TaskKind::Generation(_) => None,
        }
    }

    /// Gold label strings, as they appear in the data's `target` (empty for generation).
    pub fn labels(&self) -> &[String] {
        self.classification().map_or(&[], |c| &c.labels)
    }

    /// The continuation scored for each label (same order as [`Task::labels`]; empty for
    /// generation).
    pub fn verbalizers(&self) -> &[String] {
        self.classification().map_or(&[], |c| &c.verbalizers)
    }

    /// Whether the task file asks for contextual calibration (never for generation).
    pub fn calibrates(&self) -> bool {
        self.classification().is_some_and(|c| c.calibrate)
    }

    /// The content-free input of calibration (classification; "N/A" unless the file says).
    pub(crate) fn content_free_input(&self) -> &str {
        self.classification()
            .map_or(DEFAULT_CONTENT_FREE, |c| &c.content_free_input)
    }

    /// What reports call the headline score: "accuracy" (classification) or the metric's name.
    pub fn metric_name(&self) -> &'static str {
        self.generation().map_or("accuracy", |g| g.metric.name())
    }

    /// The examples of a split.
    pub fn examples(&self, split: Split) -> &[Example] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// A train example written as a demonstration, to follow the instruction in a prompt.
    /// Completion: with the task's template, the text after `{prompt}` with the input filled in
    /// and the answer appended (the label's verbaliser for classification), e.g. "Review: a
    /// gem\nSentiment: positive". Chat: a `User:`/`Assistant:` block
    /// ([`format::demonstration`]) that scoring renders as a user and an assistant turn.
    pub fn demonstration(&self, example: &Example) -> String {
        let verbalizer = self
            .labels()
            .iter()
            .position(|l| *l == example.target)
            .and_then(|i| self.verbalizers().get(i));
        if let Format::Chat(_) = self.format {
            let answer = verbalizer.map_or_else(|| example.target.trim().to_string(), Clone::clone);
            return format::demonstration(&example.input, &answer);
        }
        let (before, after) = self.template.split("");
        let answer = verbalizer.map_or_else(|| format!(" {}", example.target.trim()), Clone::clone);
        format!("{}{}{after}{answer}", before.trim_start(), example.input)
    }

    /// Gold label indices of a split's examples (train labels are computed on demand; empty for
    /// generation tasks).
    pub fn gold(&self, split: Split) -> Vec<usize> {
        match split {
            Split::Dev => self.gold_dev.clone(),
            Split::Validation => self.gold_validation.clone(),
            Split::Test => self.gold_test.clone(),
            Split::Train if self.is_generation() => Vec::new(),
            Split::Train => self
                .train
                .iter()
                .map(|e| {
                    self.labels()
                        .iter()
                        .position(|l| *l == e.target)
                        .unwrap_or(0)
                })
                .collect(),
        }
    }
}

/// Checks every accepted answer of a generation split against the task's metric (a `json`
/// target must be JSON, a `number` target a number), naming the data line.
fn check_targets(metric: &MetricSpec, split: &[Example], path: &Path) -> Result<()> {
    for ex in split {
        for target in &ex.targets {
            metric.check_target(target).map_err(|message| Error::Line {
                path: path.to_path_buf(),
                line: ex.line,
                message: message.to_string(),
            })?;
        }
    }
    Ok(())
}

/// The task's format and template, validated: `template` for completion tasks; `system` and
/// `user` (defaults [`format::DEFAULT_SYSTEM`], [`format::DEFAULT_USER`]) for chat tasks, whose
/// template is their plain-text stand-in. Keys of the other format are rejected.
fn task_format(path: &Path, file: &TaskFile) -> Result<(Format, Template)> {
    let bad = |e: &dyn std::fmt::Display| Error::task(path, e.to_string());
    match file.format {
        FormatName::Completion => {
            for (key, given) in [("system", &file.system), ("user", &file.user)] {
                if given.is_some() {
                    return Err(Error::task(path, format!("`{key}` applies only to format = \"chat\": remove it, or set format = \"chat\" (and drop `template`)")));
                }
            }
            let text = file.template.as_deref().ok_or_else(|| {
                Error::task(path, "`template` is missing: give the text around the prompt and input, e.g. template = \"{prompt}\\n\\nInput: {input}\\nOutput:\", or set format = \"chat\"")
            })?;
            Ok((
                Format::Completion,
                Template::new(text).map_err(|e| bad(&e))?,
            ))
        }
        FormatName::Chat => {
            if file.template.is_some() {
                return Err(Error::task(path, "`template` applies only to format = \"completion\": chat tasks take `system` and `user` message templates (defaults system = \"{prompt}\", user = \"{input}\"); remove `template`"));
            }
            let chat = ChatFormat::new(file.system.as_deref(), file.user.as_deref())
                .map_err(|e| bad(&e))?;
            let plain = if chat.system().is_empty() {
                chat.user().to_string()
            } else {
                format!("{}\n\n{}", chat.system(), chat.user())
            };
            let template = Template::new(&plain).map_err(|e| bad(&e))?;
            Ok((Format::Chat(chat), template))
        }
    }
}

/// Labels, verbalisers and calibration of a classification task, validated; generation-only
/// keys rejected. Default verbalisers are the labels after a space (completion, where they follow
/// a word) or the labels themselves (chat, where they start the assistant's turn).
fn classification_spec(
    path: &Path,
    file: &TaskFile,
    format: &Format,
) -> Result<ClassificationSpec> {
    for (key, given) in [
        ("metric", file.metric.is_some()),
        ("max_new_tokens", file.max_new_tokens.is_some()),
        ("stop", file.stop.is_some()),
    ] {
        if given {
            return Err(Error::task(
                path,
                format!(
                    "`{key}` applies only to kind = \"generation\": remove it or change `kind`"
                ),
            ));
        }
    }
    let labels = file.labels.clone().unwrap_or_default();
    if labels.is_empty() {
        return Err(Error::task(path, "`labels` is empty: list the label strings of the data's `target` field, e.g. labels = [\"negative\", \"positive\"]"));
    }
    let verbalizers = match &file.verbalizers {
        Some(v) => v.clone(),
        None => match format {
            Format::Completion => labels.iter().map(|l| format!(" {l}")).collect(),
            Format::Chat(_) => labels.clone(),
        },
    };
    if verbalizers.len() != labels.len() {
        return Err(Error::task(
            path,
            format!(
                "`verbalizers` has {} entries but `labels` has {}: give one verbaliser per label",
                verbalizers.len(),
                labels.len()
            ),
        ));
    }
    if verbalizers.iter().any(|v| v.trim().is_empty()) {
        return Err(Error::task(path, "a verbaliser is empty: each label needs a non-empty continuation such as \" positive\""));
    }
    Ok(ClassificationSpec {
        labels,
        verbalizers,
        calibrate: file.calibrate.unwrap_or(false),
        content_free_input: file
            .content_free_input
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_FREE.to_string()),
    })
}

/// Metric and decoding limits of a generation task, validated; classification-only keys
/// rejected. Default stop strings: a newline (completion), none (chat: the answer ends with the
/// model's end-of-turn token).
fn generation_spec(path: &Path, file: &TaskFile, format: &Format) -> Result<GenerationSpec> {
    for (key, given) in [
        ("labels", file.labels.is_some()),
        ("verbalizers", file.verbalizers.is_some()),
        ("calibrate", file.calibrate.is_some()),
        ("content_free_input", file.content_free_input.is_some()),
    ] {
        if given {
            return Err(Error::task(path, format!("`{key}` applies only to kind = \"classification\": remove it (generation tasks are scored with `metric`)")));
        }
    }
    let max_new_tokens = file.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    if max_new_tokens == 0 {
        return Err(Error::task(
            path,
            "`max_new_tokens` is 0: set it to at least 1 (default 16)",
        ));
    }
    let stop = file.stop.clone().unwrap_or_else(|| match format {
        Format::Completion => vec!["\n".to_string()],
        Format::Chat(_) => Vec::new(),
    });
    if stop.iter().any(|s| s.is_empty()) {
        return Err(Error::task(path, "`stop` has an empty string: remove it (an empty stop string would end every answer at once)"));
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    let metric = MetricSpec::parse(file.metric.as_ref(), folder)
        .map_err(|e| Error::task(path, format!("{e}; see the README's task-file section")))?;
    Ok(GenerationSpec {
        metric,
        max_new_tokens,
        stop,
    })
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
        assert_eq!(t.verbalizers(), [" negative", " positive"]);
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
    fn a_missing_key_is_named_with_what_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_task(dir.path(), "{prompt} {input}", "[\"a\", \"b\"]");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("kind = \"classification\"\n", "")).unwrap();
        let err = Task::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("t.toml")
                && err.contains("missing field `kind`: add kind = \"classification\""),
            "{err}"
        );
        std::fs::write(&p, text.replace("name = \"t\"\n", "")).unwrap();
        let err = Task::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("missing field `name`: add it (see a shipped task"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
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

    fn write_generation_task(dir: &Path, extra: &str) -> PathBuf {
        std::fs::write(
            dir.join("g.jsonl"),
            "{\"input\": \"hot\", \"target\": \"cold\", \"targets\": [\"cold\", \"chilly\"]}\n",
        )
        .unwrap();
        let p = dir.join("g.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"g\"\nkind = \"generation\"\ntemplate = \"{{prompt}}\\nInput: {{input}}\\nOutput:\"\n{extra}\ninitial_prompts = [\"Opposite.\"]\n[data]\ndev = \"g.jsonl\"\ntest = \"g.jsonl\"\n"
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn generation_task_loads_with_defaults_and_no_labels() {
        let dir = tempfile::tempdir().unwrap();
        let t = Task::load(&write_generation_task(dir.path(), "")).unwrap();
        assert!(t.is_generation() && t.labels().is_empty());
        let g = t.generation().unwrap();
        assert_eq!(g.metric.name(), "exact");
        assert_eq!((g.max_new_tokens, &g.stop), (16, &vec!["\n".to_string()]));
        assert_eq!(t.dev[0].targets, vec!["cold", "chilly"]);
        let t = Task::load(&write_generation_task(
            dir.path(),
            "metric = \"f1\"\nmax_new_tokens = 4\nstop = [\".\"]",
        ))
        .unwrap();
        assert_eq!(t.generation().unwrap().metric.name(), "f1");
    }

    #[test]
    fn generation_task_with_labels_or_bad_metric_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Task::load(&write_generation_task(dir.path(), "labels = [\"a\"]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("g.toml") && err.contains("remove it"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = Task::load(&write_generation_task(dir.path(), "metric = \"bleu\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("g.toml") && err.contains("exact"), "{err}");
        let err = Task::load(&write_generation_task(dir.path(), "max_new_tokens = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn classification_task_with_a_metric_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_task(
            dir.path(),
            "{prompt} {input}",
            "[\"positive\"]\nmetric = \"exact\"",
        );
        let err = Task::load(&p).unwrap_err().to_string();
        assert!(err.contains("only to kind = \"generation\""), "{err}");
    }

    fn write_chat_task(dir: &Path, keys: &str) -> PathBuf {
        std::fs::write(
            dir.join("d.jsonl"),
            "{\"input\": \"good\", \"target\": \"positive\"}\n",
        )
        .unwrap();
        let p = dir.join("c.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"c\"\nkind = \"classification\"\nformat = \"chat\"\n{keys}\nlabels = [\"negative\", \"positive\"]\ninitial_prompts = [\"Say it.\"]\n[data]\ntrain = \"d.jsonl\"\ndev = \"d.jsonl\"\ntest = \"d.jsonl\"\n"
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn chat_task_loads_with_default_messages_and_unspaced_verbalizers() {
        let dir = tempfile::tempdir().unwrap();
        let t = Task::load(&write_chat_task(dir.path(), "")).unwrap();
        let Format::Chat(chat) = &t.format else {
            panic!("not a chat task: {:?}", t.format)
        };
        assert_eq!((chat.system(), chat.user()), ("{prompt}", "{input}"));
        assert_eq!(t.verbalizers(), vec!["negative", "positive"]);
        assert_eq!(t.template.as_str(), "{prompt}\n\n{input}");
        // Demonstrations are User:/Assistant: blocks that scoring turns into chat turns.
        assert_eq!(
            t.demonstration(&t.train[0]),
            "User: good\nAssistant: positive"
        );
        let t = Task::load(&write_chat_task(
            dir.path(),
            "system = \"\"\nuser = \"{prompt}\\nReview: {input}\"\nverbalizers = [\" neg\", \" pos\"]",
        ))
        .unwrap();
        assert_eq!(t.verbalizers(), vec![" neg", " pos"]);
    }

    #[test]
    fn chat_task_without_input_in_user_is_one_line_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (keys, want) in [
            ("user = \"Review\"", "`user` has no {input}"),
            ("system = \"{input}\"", "in `user` only"),
            ("template = \"{prompt} {input}\"", "remove `template`"),
        ] {
            let err = Task::load(&write_chat_task(dir.path(), keys))
                .unwrap_err()
                .to_string();
            assert!(err.contains("c.toml") && err.contains(want), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let p = write_task(
            dir.path(),
            "{prompt} {input}",
            "[\"positive\"]\nuser = \"{input}\"",
        );
        let err = Task::load(&p).unwrap_err().to_string();
        assert!(err.contains("only to format = \"chat\""), "{err}");
    }

    #[test]
    fn shipped_tasks_load() {
        for name in [
            "sst2",
            "sst2-chat",
            "trec-chat",
            "subj",
            "trec",
            "agnews",
            "antonyms",
            "larger_animal",
            "first_word_letter",
            "sentiment",
            "orthography_starts_with",
            "sum",
            "diff",
            "larger_animal_json",
            "larger_animal_lenient",
        ] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("experiments/tasks/{name}.toml"));
            let t = Task::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!t.dev.is_empty() && !t.test.is_empty() && !t.initial_prompts.is_empty());
            // Validation is carved off the end of train: disjoint from the demonstrations' pool.
            assert!(t.validation.len() >= 100, "{name}: {}", t.validation.len());
            assert!(t.validation.iter().enumerate().all(|(i, e)| e.id == i));
            assert!(t
                .validation
                .iter()
                .all(|v| !t.train.iter().any(|e| e.input == v.input)));
            if !t.is_generation() {
                assert_eq!(t.gold(Split::Validation).len(), t.validation.len());
            }
        }
    }
}
