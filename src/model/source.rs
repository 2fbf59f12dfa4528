//! Finds the model to load: `--model PATH`, else `$PROMPTEVO_MODEL`, else the default file in
//! `models/`; `hf:REPO[:FILE]` downloads through hf-hub.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default model's file name, as `models/fetch-default.sh` writes it.
pub(crate) const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The environment variable that names a model when `--model` is not given.
pub(crate) const MODEL_ENV: &str = "PROMPTEVO_MODEL";
/// The command that fetches the default model.
pub(crate) const FETCH_COMMAND: &str = "./models/fetch-default.sh";

/// Where a model comes from, before it is resolved to a local file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// A local GGUF file or Hugging Face model folder.
    Path(PathBuf),
    /// A file of a Hugging Face hub repository (`hf:REPO[:FILE]`).
    Hub {
        /// `owner/name`.
        repo: String,
        /// File in the repository; when absent the repository's only `.gguf` file.
        file: Option<String>,
    },
}

impl ModelSpec {
    /// Parses a `--model` value.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, file) = match rest.split_once(':') {
                Some((r, f)) => (r, Some(f.to_string())),
                None => (rest, None),
            };
            if repo.split('/').count() != 2 || repo.starts_with('/') || repo.ends_with('/') {
                return Err(Error::Usage(format!(
                    "--model {s}: a hub model is hf:OWNER/NAME[:FILE.gguf]"
                )));
            }
            return Ok(ModelSpec::Hub {
                repo: repo.to_string(),
                file,
            });
        }
        Ok(ModelSpec::Path(PathBuf::from(s)))
    }

    /// Picks the model from the flag, the environment or the default location.
    pub fn resolve_default(flag: Option<&str>) -> Result<Self> {
        if let Some(f) = flag {
            return Self::parse(f);
        }
        if let Ok(v) = std::env::var(MODEL_ENV) {
            if !v.is_empty() {
                return Self::parse(&v);
            }
        }
        for dir in default_model_dirs() {
            let p = dir.join(DEFAULT_MODEL_FILE);
            if p.is_file() {
                return Ok(ModelSpec::Path(p));
            }
        }
        Err(Error::ModelNotFound(format!(
            "no model given and the default model {DEFAULT_MODEL_FILE} is in none of {}: run `{FETCH_COMMAND}` in the promptevo folder, or pass --model PATH (or set ${MODEL_ENV})",
            default_model_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// A local file for this spec, downloading from the hub when needed.
    pub fn local_path(&self) -> Result<PathBuf> {
        match self {
            ModelSpec::Path(p) => {
                // A GGUF file, or a Hugging Face folder (config.json, *.safetensors).
                if !p.is_file() && !p.join("config.json").is_file() {
                    let hint = if p.file_name().is_some_and(|n| n == DEFAULT_MODEL_FILE) {
                        format!(" (fetch it with `{FETCH_COMMAND}`)")
                    } else {
                        " (check --model or $PROMPTEVO_MODEL)".to_string()
                    };
                    return Err(Error::ModelNotFound(format!(
                        "model file {} not found{hint}",
                        p.display()
                    )));
                }
                Ok(p.clone())
            }
            ModelSpec::Hub { repo, file } => download(repo, file.as_deref()),
        }
    }
}

/// `models/` next to the current directory, and next to the executable's crate root.
/// Where the default model is looked for, in order: the per-user cache folder that
/// `models/fetch-default.sh` also fills ([`model_cache_dir`]), `models/` under the working
/// directory, and the checkout this binary was built from.
fn default_model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = model_cache_dir().into_iter().collect();
    dirs.push(PathBuf::from("models"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// The per-user model cache: `$XDG_CACHE_HOME/promptevo/models`, else
/// `$HOME/.cache/promptevo/models` (None when neither variable is set).
pub(crate) fn model_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("promptevo").join("models"))
}

fn download(repo: &str, file: Option<&str>) -> Result<PathBuf> {
    let offline = |e: &dyn std::fmt::Display| {
        Error::ModelNotFound(format!(
            "cannot fetch hf:{repo} from the Hugging Face hub ({e}); check the network, or download the file yourself and pass --model PATH"
        ))
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| offline(&e))?;
    let api_repo = api.model(repo.to_string());
    let file = match file {
        Some(f) => f.to_string(),
        None => {
            let info = api_repo.info().map_err(|e| offline(&e))?;
            let ggufs: Vec<String> = info
                .siblings
                .into_iter()
                .map(|s| s.rfilename)
                .filter(|f| f.ends_with(".gguf"))
                .collect();
            match ggufs.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(Error::ModelNotFound(format!(
                        "hf:{repo} has no .gguf file; name one with hf:{repo}:FILE.gguf"
                    )))
                }
                many => {
                    return Err(Error::ModelNotFound(format!(
                        "hf:{repo} has {} .gguf files; pick one with hf:{repo}:FILE, e.g. {}",
                        many.len(),
                        many[0]
                    )))
                }
            }
        }
    };
    api_repo.get(&file).map_err(|e| offline(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_and_path_specs() {
        assert_eq!(
            ModelSpec::parse("hf:a/b:c.gguf").unwrap(),
            ModelSpec::Hub {
                repo: "a/b".into(),
                file: Some("c.gguf".into())
            }
        );
        assert_eq!(
            ModelSpec::parse("hf:a/b").unwrap(),
            ModelSpec::Hub {
                repo: "a/b".into(),
                file: None
            }
        );
        assert!(ModelSpec::parse("hf:nope").is_err());
        assert_eq!(
            ModelSpec::parse("x.gguf").unwrap(),
            ModelSpec::Path("x.gguf".into())
        );
    }

    #[test]
    fn missing_local_file_names_the_fix() {
        let err = ModelSpec::Path(PathBuf::from(
            "/nonexistent/SmolLM2-135M-Instruct.Q4_1.gguf",
        ))
        .local_path()
        .unwrap_err()
        .to_string();
        assert!(err.contains("fetch-default.sh"), "{err}");
    }
}
