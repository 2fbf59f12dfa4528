//! Metrics of generation tasks: the [`Metric`] trait, the one registry of metric names
//! ([`REGISTRY`]), and [`MetricSpec`], a task file's `metric` key read through it. Each metric
//! lives in its own file; a new one is that file plus one line in [`REGISTRY`].
//!
//! In a task file `metric` is either a name (`metric = "exact"`) or a table holding the name
//! and the metric's parameters:
//!
//! ```toml
//! [metric]
//! name = "set"
//! separator = ","
//! ```

mod command;
pub mod common;
mod contains;
mod exact;
mod f1;
mod json;
mod judge;
mod number;
mod regex;
mod rouge;
mod set;

use std::path::Path;
use std::sync::Arc;

use common::Params;
pub use common::{
    each, Answer, BadTarget, LabelScorer, Metric, MetricError, Scored, ScoringModel, ServerLabels,
    Services,
};
pub use exact::normalise_exact;
pub use f1::{squad_tokens, token_f1};

/// Makes a metric from its `[metric]` parameters.
pub(crate) type Constructor = fn(&mut Params<'_>) -> Result<Box<dyn Metric>, MetricError>;

/// Every metric a task file can name, with its constructor. A new metric is one file in this
/// folder and one line here.
pub(crate) const REGISTRY: &[(&str, Constructor)] = &[
    ("exact", exact::new),
    ("contains", contains::new),
    ("f1", f1::new),
    ("set", set::new),
    ("number", number::new),
    ("regex", regex::new),
    ("json", json::new),
    ("command", command::new),
    ("judge", judge::new),
    ("rouge", rouge::new),
];

/// The metric of a task file that names none.
pub(crate) const DEFAULT_METRIC: &str = "exact";

/// The names in [`REGISTRY`], comma-separated.
pub(crate) fn known_names() -> String {
    REGISTRY
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A task's metric: its name and parameters as the task file gave them, and the metric made
/// from them.
#[derive(Clone, Debug)]
pub struct MetricSpec {
    name: &'static str,
    params: toml::Table,
    metric: Arc<dyn Metric>,
}

impl MetricSpec {
    /// Reads a task file's `metric` value (None: the default, exact match). `folder` is the task
    /// file's folder.
    pub fn parse(value: Option<&toml::Value>, folder: &Path) -> Result<Self, MetricError> {
        let (name, params) = match value {
            None => (DEFAULT_METRIC.to_string(), toml::Table::new()),
            Some(toml::Value::String(name)) => (name.clone(), toml::Table::new()),
            Some(toml::Value::Table(t)) => {
                let mut params = t.clone();
                match params.remove("name") {
                    Some(toml::Value::String(name)) => (name, params),
                    _ => {
                        return Err(MetricError::Config(format!(
                            "`[metric]` has no `name`: add e.g. name = \"set\" (known metrics: {})",
                            known_names()
                        )))
                    }
                }
            }
            Some(other) => {
                return Err(MetricError::Config(format!(
                    "`metric` must be a metric name such as \"exact\" or a [metric] table with a `name`, found a {}",
                    other.type_str()
                )))
            }
        };
        Self::new(&name, params, folder)
    }

    /// The metric `name` with these parameters (`folder`: where relative paths start).
    pub fn new(name: &str, params: toml::Table, folder: &Path) -> Result<Self, MetricError> {
        let Some(&(name, constructor)) = REGISTRY.iter().find(|(n, _)| *n == name) else {
            return Err(MetricError::Config(format!(
                "`metric = {name:?}` is not a known metric: use one of {}",
                known_names()
            )));
        };
        let mut reader = Params::new(name, params.clone(), folder);
        let metric = constructor(&mut reader)?;
        reader.finish()?;
        Ok(Self {
            name,
            params,
            metric: Arc::from(metric),
        })
    }

    /// The metric's registry name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Scores a batch of answers (see [`Metric::score`]), checking the metric gave one result
    /// per answer.
    pub fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        if answers.is_empty() {
            return Ok(Vec::new());
        }
        self.metric.score(answers)
    }

    /// Prepares the metric for scoring with the scoring layer's services (see
    /// [`Metric::prepare`]).
    pub(crate) fn prepare(&self, services: &Services<'_>) -> Result<(), MetricError> {
        self.metric.prepare(services)
    }

    /// Scores one answer against its accepted answers (no input).
    pub fn score_one(&self, output: &str, targets: &[String]) -> Result<Scored, MetricError> {
        let answer = Answer {
            input: "",
            output,
            targets,
        };
        Ok(self.metric.score(&[answer])?.remove(0))
    }

    /// Checks one accepted answer of the data (see [`Metric::check_target`]).
    pub(crate) fn check_target(&self, target: &str) -> Result<(), BadTarget> {
        self.metric.check_target(target)
    }
}

impl PartialEq for MetricSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.params == other.params
    }
}

impl serde::Serialize for MetricSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = self.params.clone();
        t.insert("name".into(), toml::Value::String(self.name.into()));
        t.serialize(s)
    }
}

impl std::fmt::Display for MetricSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! Helpers of the metric files' tests.
    use super::*;

    /// Strings from string slices.
    pub fn t(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    /// One answer's result.
    pub fn score(m: &dyn Metric, output: &str, targets: &[String]) -> Scored {
        let a = Answer {
            input: "",
            output,
            targets,
        };
        m.score(&[a]).unwrap().remove(0)
    }

    /// The metric `name` with `params` (TOML lines of its table).
    pub fn metric(name: &str, params: &str) -> Arc<dyn Metric> {
        let spec = MetricSpec::new(name, toml::from_str(params).unwrap(), Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        spec.metric
    }

    /// The error making `name` with `params` gives.
    pub fn error(name: &str, params: &str) -> String {
        MetricSpec::new(name, toml::from_str(params).unwrap(), Path::new("."))
            .unwrap_err()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetricSpec, MetricError> {
        let v: toml::Table = toml::from_str(text).unwrap();
        MetricSpec::parse(v.get("metric"), Path::new("."))
    }

    #[test]
    fn a_name_or_a_table_gives_the_same_metric() {
        assert_eq!(parse("metric = \"set\"").unwrap().name(), "set");
        assert_eq!(
            parse("[metric]\nname = \"set\"\nseparator = \";\"")
                .unwrap()
                .name(),
            "set"
        );
        assert_eq!(parse("").unwrap().name(), "exact");
    }

    #[test]
    fn unknown_names_and_keys_list_what_is_known() {
        let e = parse("metric = \"bleu\"").unwrap_err().to_string();
        assert!(e.contains("bleu") && e.contains("exact, contains"), "{e}");
        let e = parse("[metric]\nname = \"set\"\nseperator = \",\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("seperator") && e.contains("separator"), "{e}");
        let e = parse("[metric]\nname = \"exact\"\nx = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no parameters"), "{e}");
        let e = parse("[metric]\nseparator = \",\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `name`"), "{e}");
    }

    #[test]
    fn the_readme_documents_every_registered_metric() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        for (name, _) in REGISTRY {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "README.md's metric table lacks `{name}`"
            );
        }
    }

    #[test]
    fn every_registered_name_is_unique() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
    }
}
