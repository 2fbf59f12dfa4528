//! A benchmark file (`experiments/benches/*.toml`): tasks, seeds, limits, a base `[search]` and
//! the `[[arm]]`s whose `[arm.search]` tables override it. Everything is checked before any run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::peer::{PeerTools, RawPeerTools, PEER_NAMES};
use crate::error::{line_of, Error, Result};
use crate::evolve::strategies::check_operators;
use crate::evolve::SearchConfig;

/// Pool used when the benchmark file names none: the one compiled into the binary.
pub(crate) const DEFAULT_POOL: &str = crate::evolve::pool::BUILTIN_POOL;

/// The file as written; the `search` tables stay raw until merged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBench {
    name: String,
    tasks: Vec<PathBuf>,
    seeds: Vec<u64>,
    dev_limit: usize,
    test_limit: usize,
    #[serde(default)]
    validation_limit: usize,
    #[serde(default)]
    max_initial_prompts: Option<usize>,
    #[serde(default)]
    pool: Option<PathBuf>,
    #[serde(default)]
    calibrate: bool,
    #[serde(default)]
    search: toml::Table,
    #[serde(default)]
    peers: RawPeerTools,
    #[serde(default)]
    compare: Option<Vec<String>>,
    #[serde(default)]
    arm: Vec<RawArm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    name: String,
    /// `search` (the default: our search) or `peer` (an external optimiser).
    #[serde(default)]
    kind: Option<String>,
    /// The peer of a `kind = "peer"` arm.
    #[serde(default)]
    peer: Option<String>,
    /// Only these of the benchmark's tasks (as `tasks` writes them).
    #[serde(default)]
    tasks: Option<Vec<PathBuf>>,
    /// Only these of the benchmark's seeds.
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    search: toml::Table,
}

/// One arm: a named search configuration every task and seed is run with.
#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    /// Its name (a folder name under `runs/`).
    pub name: String,
    /// The base `[search]` with the arm's overrides applied (of a peer arm: the base, whose
    /// `max_evals` is its budget).
    pub search: SearchConfig,
    /// The external optimiser a `kind = "peer"` arm runs (one of [`PEER_NAMES`]); None for our
    /// own search.
    pub peer: Option<String>,
    /// The benchmark's tasks it runs (indices into [`BenchConfig::tasks`]); None: all.
    pub tasks: Option<Vec<usize>>,
    /// The benchmark's seeds it runs; None: all.
    pub seeds: Option<Vec<u64>>,
}

impl Arm {
    /// Whether it runs task `task` (an index into [`BenchConfig::tasks`]) with `seed`.
    pub fn runs_on(&self, task: usize, seed: u64) -> bool {
        self.tasks.as_ref().is_none_or(|t| t.contains(&task))
            && self.seeds.as_ref().is_none_or(|s| s.contains(&seed))
    }

    /// What `results.csv` names its strategy: the search's, or `peer:<name>`.
    pub fn strategy(&self) -> String {
        match &self.peer {
            Some(p) => format!("peer:{p}"),
            None => self.search.strategy.clone(),
        }
    }
}

/// A checked benchmark configuration, with paths resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// Benchmark name (default output folder `runs/bench-<name>`).
    pub name: String,
    /// Task files, resolved against the benchmark file's folder.
    pub tasks: Vec<PathBuf>,
    /// Seeds; every arm and task is run once per seed.
    pub seeds: Vec<u64>,
    /// Dev examples per full evaluation.
    pub dev_limit: usize,
    /// Test examples scored for each run's report.
    pub test_limit: usize,
    /// Validation examples of each run's final choice (0: the best on dev is the answer).
    pub validation_limit: usize,
    /// Use only each task's first N initial prompts.
    pub max_initial_prompts: Option<usize>,
    /// The phrase pool file.
    pub pool: PathBuf,
    /// Calibrated fitness for every task (otherwise each task's own `calibrate`).
    pub calibrate: bool,
    /// The arms, in file order.
    pub arms: Vec<Arm>,
    /// Where the peer arms' tools are (`[peers]`, resolved against the file's folder).
    pub peer_tools: PeerTools,
    /// The arms `bench.md` compares with every other arm, each in its own section (`compare`;
    /// default: the first arm, the candidate a benchmark is about).
    pub compare: Vec<String>,
}

/// Overlays `over` onto `base`; nested tables (such as `operators`) are merged key by key.
fn merge(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (k, v) in over {
        match (out.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => *b = merge(b, o),
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// A safe folder name: letters, digits, `-`, `_`, `.`, not starting with `.`.
fn is_folder_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl BenchConfig {
    /// Reads and checks a benchmark file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of a benchmark file read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Bench {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawBench = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            fail(format!(
                "{at}{} (see experiments/benches/strategies.toml for the format)",
                e.message().trim()
            ))
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if !is_folder_name(&raw.name) {
            return Err(fail(format!(
                "name `{}` must be letters, digits, `-`, `_` or `.`",
                raw.name
            )));
        }
        if raw.tasks.is_empty() {
            return Err(fail("`tasks` is empty; list at least one task file".into()));
        }
        if raw.seeds.is_empty() {
            return Err(fail("`seeds` is empty; list at least one seed".into()));
        }
        if raw.seeds.iter().collect::<BTreeSet<_>>().len() != raw.seeds.len() {
            return Err(fail("`seeds` repeats a seed; list each seed once".into()));
        }
        if raw.dev_limit == 0 || raw.test_limit == 0 {
            return Err(fail(
                "`dev_limit` and `test_limit` must be at least 1".into(),
            ));
        }
        if raw.max_initial_prompts == Some(0) {
            return Err(fail(
                "`max_initial_prompts` must be at least 1 (or left out to use them all)".into(),
            ));
        }
        if raw.arm.is_empty() {
            return Err(fail(
                "no [[arm]]; add at least one, e.g. [[arm]] name = \"ga\"".into(),
            ));
        }
        let mut arms = Vec::with_capacity(raw.arm.len());
        let mut budget = None;
        for a in &raw.arm {
            if !is_folder_name(&a.name) {
                return Err(fail(format!(
                    "arm name `{}` must be letters, digits, `-`, `_` or `.`",
                    a.name
                )));
            }
            if arms.iter().any(|b: &Arm| b.name == a.name) {
                return Err(fail(format!(
                    "two arms are named `{}`; give each arm its own name",
                    a.name
                )));
            }
            let peer = match (a.kind.as_deref(), &a.peer) {
                (None | Some("search"), None) => None,
                (Some("peer"), Some(p)) if PEER_NAMES.contains(&p.as_str()) => {
                    if !a.search.is_empty() {
                        return Err(fail(format!(
                            "arm `{}` is a peer, which runs its own search: remove its [arm.search] (its budget is [search] max_evals)",
                            a.name
                        )));
                    }
                    Some(p.clone())
                }
                (Some("peer"), Some(p)) => {
                    return Err(fail(format!(
                        "arm `{}`: unknown peer `{p}`; one of {}",
                        a.name,
                        PEER_NAMES.join(", ")
                    )))
                }
                (Some("peer"), None) => {
                    return Err(fail(format!(
                        "arm `{}` has kind = \"peer\" but no peer; add peer = one of {}",
                        a.name,
                        PEER_NAMES.join(", ")
                    )))
                }
                (None | Some("search"), Some(_)) => {
                    return Err(fail(format!(
                        "arm `{}` names a peer but is not kind = \"peer\"; add kind = \"peer\"",
                        a.name
                    )))
                }
                (Some(k), _) => {
                    return Err(fail(format!(
                        "arm `{}`: unknown kind `{k}`; `search` (the default) or `peer`",
                        a.name
                    )))
                }
            };
            let merged = merge(&raw.search, &a.search);
            let search: SearchConfig =
                toml::Value::Table(merged)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        fail(format!(
                            "arm `{}`: [search]: {}",
                            a.name,
                            e.message().trim()
                        ))
                    })?;
            search
                .validate()
                .map_err(|e| fail(format!("arm `{}`: {e}", a.name)))?;
            check_operators(&search).map_err(|e| fail(format!("arm `{}`: {e}", a.name)))?;
            let Some(evals) = search.max_evals else {
                return Err(fail(format!(
                    "arm `{}` has no max_evals; set max_evals in [search] so every arm gets the same budget",
                    a.name
                )));
            };
            match budget {
                Some(b) if b != evals => {
                    return Err(fail(format!(
                        "arm `{}` has max_evals {evals} but an earlier arm has {b}; a benchmark compares arms at the same budget",
                        a.name
                    )))
                }
                _ => budget = Some(evals),
            }
            let tasks = match &a.tasks {
                None => None,
                Some(ts) => Some(
                    ts.iter()
                        .map(|t| {
                            raw.tasks.iter().position(|b| b == t).ok_or_else(|| {
                                fail(format!(
                                    "arm `{}` names task {} that is not in `tasks`; write it as `tasks` does",
                                    a.name,
                                    t.display()
                                ))
                            })
                        })
                        .collect::<Result<Vec<usize>>>()?,
                ),
            };
            if let Some(seed) = a.seeds.iter().flatten().find(|s| !raw.seeds.contains(s)) {
                return Err(fail(format!(
                    "arm `{}` names seed {seed} that is not in `seeds`; add it there or drop it",
                    a.name
                )));
            }
            if tasks.as_ref().is_some_and(Vec::is_empty)
                || a.seeds.as_ref().is_some_and(Vec::is_empty)
            {
                return Err(fail(format!(
                    "arm `{}` has an empty `tasks` or `seeds`; list some or leave it out for all",
                    a.name
                )));
            }
            arms.push(Arm {
                name: a.name.clone(),
                search,
                peer,
                tasks,
                seeds: a.seeds.clone(),
            });
        }
        let compare = raw.compare.unwrap_or_else(|| vec![arms[0].name.clone()]);
        if let Some(unknown) = compare.iter().find(|c| arms.iter().all(|a| &a.name != *c)) {
            return Err(fail(format!(
                "`compare` names arm `{unknown}`, which the file lacks; its arms: {}",
                arms.iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            name: raw.name,
            tasks: raw.tasks.iter().map(|t| dir.join(t)).collect(),
            seeds: raw.seeds,
            dev_limit: raw.dev_limit,
            test_limit: raw.test_limit,
            validation_limit: raw.validation_limit,
            max_initial_prompts: raw.max_initial_prompts,
            pool: raw
                .pool
                .map_or_else(|| PathBuf::from(DEFAULT_POOL), |p| dir.join(p)),
            calibrate: raw.calibrate,
            arms,
            peer_tools: raw.peers.resolve(dir),
            compare,
        })
    }

    /// Runs in the benchmark: arms x tasks x seeds, each arm on the tasks and seeds it runs.
    pub(crate) fn run_count(&self) -> usize {
        self.arms
            .iter()
            .map(|a| {
                a.tasks.as_ref().map_or(self.tasks.len(), Vec::len)
                    * a.seeds.as_ref().map_or(self.seeds.len(), Vec::len)
            })
            .sum()
    }

    /// The arm every other is compared with: the one named `random`, else the first.
    pub fn baseline(&self) -> &str {
        self.arms
            .iter()
            .find(|a| a.name == "random")
            .unwrap_or(&self.arms[0])
            .name
            .as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
tasks = ["../tasks/sst2.toml"]
seeds = [0, 1]
dev_limit = 8
test_limit = 8
max_initial_prompts = 2
[search]
population = 3
elite = 1
max_evals = 48
operators = { paraphrase = 1.0, swap = 1.0 }
[[arm]]
name = "ga"
[[arm]]
name = "random"
[arm.search]
strategy = "random"
operators = { swap = 0.0 }
"#;

    #[test]
    fn an_arm_may_run_only_some_tasks_and_seeds() {
        let text = format!(
            "{BASE}[[arm]]\nname = \"late\"\ntasks = [\"../tasks/sst2.toml\"]\nseeds = [1]\n"
        );
        let c = BenchConfig::parse(&text, Path::new("b/x.toml")).unwrap();
        let late = &c.arms[2];
        assert!(late.runs_on(0, 1) && !late.runs_on(0, 0));
        assert!(c.arms[0].runs_on(0, 0) && c.arms[0].runs_on(0, 1));
        // ga and random on 1 task x 2 seeds, late on 1 x 1.
        assert_eq!(c.run_count(), 5);
        for (arm, want) in [
            ("tasks = [\"../tasks/trec.toml\"]", "not in `tasks`"),
            ("seeds = [7]", "seed 7 that is not in `seeds`"),
            ("seeds = []", "empty `tasks` or `seeds`"),
        ] {
            let text = format!("{BASE}[[arm]]\nname = \"p\"\n{arm}\n");
            let err = BenchConfig::parse(&text, Path::new("b/x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("b/x.toml: ") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn arm_tables_override_the_base_key_by_key() {
        let c = BenchConfig::parse(BASE, Path::new("experiments/benches/x.toml")).unwrap();
        assert_eq!(c.arms.len(), 2);
        assert_eq!(c.arms[0].search.strategy, crate::evolve::STRATEGY_NAMES[0]);
        assert_eq!(c.arms[1].search.strategy, "random");
        assert_eq!(c.arms[1].search.population, 3);
        assert_eq!(c.arms[1].search.operators["swap"], 0.0);
        assert_eq!(c.arms[1].search.operators["paraphrase"], 1.0);
        assert_eq!(
            c.tasks[0],
            Path::new("experiments/benches/../tasks/sst2.toml")
        );
        assert_eq!(c.baseline(), "random");
        assert_eq!(c.run_count(), 4);
    }

    #[test]
    fn unknown_keys_strategies_and_operators_are_one_line_errors_naming_the_file() {
        for (from, to, want) in [
            ("population = 3", "populaton = 3", "populaton"),
            (
                "strategy = \"random\"",
                "strategy = \"annealing\"",
                "annealing",
            ),
            ("swap = 0.0", "swapp = 0.0", "swapp"),
            ("dev_limit = 8", "dev_limt = 8", "dev_limt"),
            ("max_evals = 48", "", "max_evals"),
        ] {
            let text = BASE.replace(from, to);
            let err = BenchConfig::parse(&text, Path::new("b/x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("b/x.toml: "), "{err}");
            assert!(err.contains(want), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn peer_arms_name_a_known_peer_keep_the_base_budget_and_take_tools_from_peers() {
        let text = format!(
            "{BASE}[peers]\npython = \"venv/bin/python\"\n[[arm]]\nname = \"capo\"\nkind = \"peer\"\npeer = \"capo\"\n"
        );
        let c = BenchConfig::parse(&text, Path::new("b/x.toml")).unwrap();
        let capo = &c.arms[2];
        assert_eq!(capo.peer.as_deref(), Some("capo"));
        assert_eq!(
            (capo.strategy(), capo.search.max_evals),
            ("peer:capo".into(), Some(48))
        );
        assert_eq!(c.arms[0].peer, None);
        assert_eq!(c.peer_tools.python, Path::new("b/venv/bin/python"));
        // Left out: the repository's, from the current directory.
        assert_eq!(
            c.peer_tools.driver,
            Path::new("experiments/peers/driver.py")
        );
        for (arm, want) in [
            ("kind = \"peer\"\npeer = \"dspy\"", "unknown peer `dspy`"),
            ("kind = \"peer\"", "no peer"),
            ("peer = \"opro\"", "add kind = \"peer\""),
            ("kind = \"plugin\"", "unknown kind `plugin`"),
            (
                "kind = \"peer\"\npeer = \"opro\"\n[arm.search]\npopulation = 4",
                "remove its [arm.search]",
            ),
        ] {
            let text = format!("{BASE}[[arm]]\nname = \"p\"\n{arm}\n");
            let err = BenchConfig::parse(&text, Path::new("b/x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("b/x.toml: ") && err.contains(want), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn shipped_benchmarks_parse_and_cover_every_strategy_and_family() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/benches");
        let s = BenchConfig::load(&dir.join("strategies.toml")).unwrap();
        let names: Vec<&str> = s.arms.iter().map(|a| a.search.strategy.as_str()).collect();
        assert_eq!(names, crate::evolve::STRATEGY_NAMES);
        assert_eq!((s.run_count(), s.baseline()), (220, "random"));
        assert!(s.tasks.iter().all(|t| t.is_file()), "{:?}", s.tasks);
        let g = BenchConfig::load(&dir.join("generation.toml")).unwrap();
        assert_eq!((g.run_count(), g.baseline()), (15, "random"));
        // Issue 24's: 5 arms x 6 tasks x 5 seeds, and two peers on the 4 classification tasks
        // x seeds 0 and 1.
        let d = BenchConfig::load(&dir.join("default.toml")).unwrap();
        assert_eq!((d.run_count(), d.baseline()), (180 + 16, "random"));
        let peers: Vec<&Arm> = d.arms.iter().filter(|a| a.peer.is_some()).collect();
        assert_eq!(peers.len(), 2);
        assert!(peers
            .iter()
            .all(|a| a.runs_on(0, 1) && a.runs_on(3, 0) && !a.runs_on(4, 0) && !a.runs_on(0, 2)));
        let o = BenchConfig::load(&dir.join("operators.toml")).unwrap();
        assert_eq!(o.baseline(), "all");
        let enabled = |arm: usize| check_operators(&o.arms[arm].search).unwrap();
        assert!(enabled(0).contains(&"evo-ga") && enabled(0).contains(&"paraphrase"));
        assert!(!enabled(4).contains(&"evo-ga") && !enabled(4).contains(&"paraphrase"));
        assert!(!enabled(2).contains(&"uniform") && enabled(2).contains(&"swap"));
        let p = BenchConfig::load(&dir.join("peers.toml")).unwrap();
        let peers: Vec<&str> = p.arms.iter().filter_map(|a| a.peer.as_deref()).collect();
        assert_eq!(peers, super::PEER_NAMES);
    }
}
