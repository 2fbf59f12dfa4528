//! The phrase pool: the phrases the insert operator may add to a prompt.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::error::EvolveError;
use super::genome::Genome;

/// The name of the default phrase pool, compiled into the binary from
/// experiments/pools/phrases.toml (`--pool FILE` replaces it).
pub const BUILTIN_POOL: &str = "builtin:phrases";

/// The default pool's text.
const BUILTIN_POOL_TOML: &str = include_str!("../../experiments/pools/phrases.toml");

/// Phrases that the insert operator may add: the phrases of the initial prompts plus a task-agnostic pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhrasePool {
    /// Deduplicated phrases, in first-seen order (every section of the pool file).
    pub phrases: Vec<String>,
    /// The `personas` section: roles for the persona gene.
    pub personas: Vec<String>,
    /// The `constraints` section: output constraints for the constraint gene.
    pub constraints: Vec<String>,
}

/// The shape of a phrase pool TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    #[serde(default)]
    instructions: Vec<String>,
    #[serde(default)]
    personas: Vec<String>,
    #[serde(default)]
    constraints: Vec<String>,
}

impl PhrasePool {
    /// Builds a pool from phrases: trims them, drops blanks and duplicates, keeps first-seen order.
    pub fn new<I, S>(phrases: I) -> PhrasePool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        PhrasePool::default().extend(phrases)
    }

    /// Loads the pool `path` names: [`BUILTIN_POOL`] is the default pool compiled into the
    /// binary (so a run works from any folder), anything else a TOML file.
    pub fn load(path: &Path) -> Result<PhrasePool, EvolveError> {
        if path == Path::new(BUILTIN_POOL) {
            return PhrasePool::from_toml_str(BUILTIN_POOL_TOML, path);
        }
        PhrasePool::from_toml_file(path)
    }

    /// Loads a pool from a TOML file with the optional string arrays `instructions`,
    /// `personas` and `constraints` (taken in that order; each entry is one phrase).
    pub fn from_toml_file(path: &Path) -> Result<PhrasePool, EvolveError> {
        let text = std::fs::read_to_string(path).map_err(|error| EvolveError::PoolRead {
            path: path.to_path_buf(),
            error,
        })?;
        PhrasePool::from_toml_str(&text, path)
    }

    /// Parses the contents of a pool file; `path` is only used in error messages.
    pub(crate) fn from_toml_str(text: &str, path: &Path) -> Result<PhrasePool, EvolveError> {
        let file: PoolFile = toml::from_str(text).map_err(|e| EvolveError::PoolParse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let sections: [(&'static str, &Vec<String>); 3] = [
            ("instructions", &file.instructions),
            ("personas", &file.personas),
            ("constraints", &file.constraints),
        ];
        for (key, entries) in sections {
            if let Some(index) = entries.iter().position(|s| s.trim().is_empty()) {
                return Err(EvolveError::BlankPoolEntry {
                    path: path.to_path_buf(),
                    key,
                    index,
                });
            }
        }
        let trimmed = |v: &Vec<String>| v.iter().map(|s| s.trim().to_string()).collect();
        Ok(PhrasePool {
            personas: trimmed(&file.personas),
            constraints: trimmed(&file.constraints),
            ..PhrasePool::new(sections.into_iter().flat_map(|(_, entries)| entries.iter()))
        })
    }

    /// Adds the phrases of these prompts (via [`Genome::parse`]) after the existing ones.
    pub(crate) fn with_prompts(self, prompts: &[String]) -> PhrasePool {
        self.extend(prompts.iter().flat_map(|p| Genome::parse(p).phrases))
    }

    /// Number of phrases.
    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// True when the pool has no phrase.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    fn extend<I, S>(mut self, phrases: I) -> PhrasePool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut seen: BTreeSet<String> = self.phrases.iter().cloned().collect();
        for phrase in phrases {
            let phrase = phrase.as_ref().trim();
            if !phrase.is_empty() && seen.insert(phrase.to_string()) {
                self.phrases.push(phrase.to_string());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_all_sections_in_order_and_deduplicates() {
        let dir = std::env::temp_dir().join(format!("evolve-pool-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pool.toml");
        std::fs::write(
            &path,
            "constraints = [\"Answer in one word.\"]\n\
             instructions = [\"Think step by step.\", \" Be careful. \", \"Think step by step.\"]\n",
        )
        .expect("write pool file");
        let pool = PhrasePool::from_toml_file(&path).expect("valid pool");
        assert_eq!(
            pool.phrases,
            ["Think step by step.", "Be careful.", "Answer in one word."]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn with_prompts_adds_new_phrases_only() {
        let pool = PhrasePool::new(["Be careful."])
            .with_prompts(&["Be careful. Given a sentence, classify it.".to_string()]);
        assert_eq!(
            pool.phrases,
            ["Be careful.", "Given a sentence,", "classify it."]
        );
    }

    #[test]
    fn empty_file_gives_empty_pool() {
        let pool = PhrasePool::from_toml_str("", Path::new("p.toml")).expect("empty is valid");
        assert!(pool.is_empty());
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        let missing = PhrasePool::from_toml_file(Path::new("/nonexistent/pool.toml")).unwrap_err();
        assert!(matches!(missing, EvolveError::PoolRead { .. }));
        assert!(missing.to_string().contains("/nonexistent/pool.toml"));

        let p = Path::new("pool.toml");
        for bad in [
            "instructions = \"not an array\"",
            "instrucions = [\"x\"]",
            "personas = [1]",
            "[[[",
        ] {
            let err = PhrasePool::from_toml_str(bad, p).unwrap_err();
            assert!(matches!(err, EvolveError::PoolParse { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("pool.toml"));
        }
        let blank = PhrasePool::from_toml_str("personas = [\"A.\", \"  \"]", p).unwrap_err();
        assert_eq!(
            blank.to_string(),
            "phrase pool file pool.toml: entry 1 of `personas` is blank; remove it or write a phrase"
        );
    }

    #[test]
    fn the_builtin_pool_is_the_shipped_file_and_needs_no_folder() {
        let builtin = PhrasePool::load(Path::new(BUILTIN_POOL)).unwrap();
        let file = PhrasePool::from_toml_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/pools/phrases.toml"),
        )
        .unwrap();
        assert_eq!(builtin.len(), file.len());
        assert!(builtin.len() > 10);
    }
}
