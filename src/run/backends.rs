//! The one place a command opens what it scores and writes with: from a run's model settings
//! (a model file run in process, or an inference server; the operators' mutator model or
//! server), [`Backends::open`] loads each model file once, connects to each server when first
//! asked, and hands out a [`Scorer`] per task and a [`TextGenerator`] per search. `optimize`,
//! `resume`, `eval` and `bench` all go through it, so they load, connect and report the
//! backend alike.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::session::{chat_generator, needs_generator, server_generator, ChatWriter, RunSettings};
use crate::error::Result;
use crate::evolve::{SearchConfig, TextGenerator};
use crate::model::{Model, WeightFormat};
use crate::progress::{Event, Progress};
use crate::remote::{Client, ServerConfig};
use crate::score::server::ServerBackend;
use crate::score::{EngineOptions, Scorer};
use crate::task::Task;

/// Which model scores and which writes, and how they run: the model fields of a run's
/// `config.json` ([`RunSettings`]), as the model flags give them.
#[derive(Clone, Debug)]
pub struct ModelSettings {
    /// The scoring model's file, or (with `server`) the scoring server's base URL.
    pub model: PathBuf,
    /// The inference server that scores (None: the file `model` runs in process).
    pub server: Option<ServerConfig>,
    /// The model file that writes text for model-driven operators (None: the scoring model,
    /// or `mutator_server`).
    pub mutator_model: Option<PathBuf>,
    /// The server model-driven operators write through (None: `mutator_model` is a file, or
    /// the scoring model or server writes).
    pub mutator_server: Option<ServerConfig>,
    /// How in-process weights are held.
    pub weights: WeightFormat,
    /// Where in-process models run (`cpu`, `cuda:N`, ...).
    pub device: String,
    /// Batching and prefix reuse of the in-process engine.
    pub engine: EngineOptions,
}

impl ModelSettings {
    /// The model settings a run's `config.json` records.
    pub fn of_run(settings: &RunSettings) -> Self {
        Self {
            model: settings.model.clone(),
            server: settings.server.clone(),
            mutator_model: settings.mutator_model.clone(),
            mutator_server: settings.mutator_server.clone(),
            weights: settings.weights,
            device: settings.device.clone(),
            engine: settings.engine,
        }
    }

    /// The server model-driven operators write through: the mutator server, else (when no
    /// mutator file is given) the scoring server; None when a model file writes.
    pub fn writer(&self) -> Option<&ServerConfig> {
        self.mutator_server.as_ref().or(self
            .mutator_model
            .is_none()
            .then_some(self.server.as_ref())
            .flatten())
    }
}

/// The opened backends of one command: in-process models loaded once, servers connected once
/// (when first needed), shared by every task's scorer and every search's generator.
pub struct Backends {
    settings: ModelSettings,
    /// The in-process scoring model (None: a server scores).
    model: Option<Model>,
    /// A mutator model file other than the scoring model.
    mutator: Option<Model>,
    /// The scoring server's client, once connected.
    scoring: OnceCell<Client>,
    /// The writing server's client, once connected.
    writing: OnceCell<Client>,
    /// The warnings [`Backends::generator`] has shown: each is shown once per command, not
    /// once per run of a benchmark.
    warned: RefCell<BTreeSet<String>>,
    /// Who hears of loads and connections (and of everything the commands using these
    /// backends do).
    progress: Arc<dyn Progress>,
}

impl Backends {
    /// Loads the in-process scoring model (unless a server scores) and a mutator model file
    /// other than it, telling `progress` of each load. Servers are connected when first asked
    /// for: the writer by [`Backends::generator`], the scorer by [`Backends::scorer`].
    pub fn open(settings: &ModelSettings, progress: Arc<dyn Progress>) -> Result<Self> {
        let load = |path: &Path| -> Result<Model> {
            let model = load_model(path, settings.weights, &settings.device)?;
            progress.event(&Event::ModelLoaded {
                name: &model.0.name,
                seconds: model.1,
            });
            Ok(model.0)
        };
        let model = match &settings.server {
            Some(_) => None,
            None => Some(load(&settings.model)?),
        };
        let mutator = match (&settings.mutator_model, settings.writer()) {
            (Some(path), None) if model.is_none() || *path != settings.model => Some(load(path)?),
            _ => None,
        };
        Ok(Self {
            settings: settings.clone(),
            model,
            mutator,
            scoring: OnceCell::new(),
            writing: OnceCell::new(),
            warned: RefCell::new(BTreeSet::new()),
            progress,
        })
    }

    /// Who hears what the commands using these backends do.
    pub fn progress(&self) -> &dyn Progress {
        self.progress.as_ref()
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The in-process scoring model (None: a server scores).
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// The scoring model's name: the file's, or the one the server serves (connecting to it).
    pub fn model_name(&self) -> Result<String> {
        Ok(match (&self.model, self.scoring_client()?) {
            (Some(model), _) => model.name.clone(),
            (None, Some(client)) => client.model().to_string(),
            (None, None) => String::new(),
        })
    }

    /// The scoring server's client, connecting on first use (None: a model file scores).
    pub(crate) fn scoring_client(&self) -> Result<Option<&Client>> {
        let Some(config) = &self.settings.server else {
            return Ok(None);
        };
        connected(&self.scoring, config).map(Some)
    }

    /// A scorer for `task` on the scoring backend: the in-process engine, or the server
    /// (prepared for the task: its scoring method probed and said on stderr).
    pub fn scorer<'a>(&'a self, task: &'a Task) -> Result<Scorer<'a>> {
        let (Some(client), Some(config)) = (self.scoring_client()?, &self.settings.server) else {
            let model = self.model.as_ref().ok_or_else(|| {
                crate::Error::Internal(
                    "no model was loaded and no server given (a bug: please report it)".into(),
                )
            })?;
            return Scorer::new(model, task, self.settings.engine);
        };
        let backend = ServerBackend::new(client.clone(), config.concurrency)
            .with_chat_template(config.chat_template.clone());
        let scorer = Scorer::with_backend(task, Box::new(backend))?;
        let info = scorer.backend_info();
        self.progress.event(&Event::ScoringServer {
            url: &config.url,
            model: &info.model,
            concurrency: config.concurrency,
            method: &info.scoring_method,
        });
        Ok(scorer)
    }

    /// The text generator model-driven operators use in a search with `search`'s settings:
    /// None when no enabled operator asks for text; else the writing server's chat endpoint
    /// (connected, and said on stderr, the first time), or the mutator or scoring model's chat
    /// template. An error when the model that should write cannot chat; a warning (once per
    /// command) when it cannot and the strategy does without.
    pub fn generator(&self, search: &SearchConfig) -> Result<Option<Box<dyn TextGenerator + '_>>> {
        if !needs_generator(search)? {
            return Ok(None);
        }
        if let Some(config) = self.settings.writer() {
            let fresh = self.writing.get().is_none();
            let client = connected(&self.writing, config)?;
            if fresh {
                self.progress.event(&Event::WritingServer {
                    url: &config.url,
                    model: client.model(),
                });
            }
            return Ok(Some(Box::new(server_generator(client.clone(), search))));
        }
        let Some(model) = self.mutator.as_ref().or(self.model.as_ref()) else {
            return Ok(None);
        };
        Ok(match chat_generator(model, search)? {
            ChatWriter::Writes(g) => Some(g as Box<dyn TextGenerator + '_>),
            ChatWriter::NotNeeded => None,
            ChatWriter::Skipped(warning) => {
                if self.warned.borrow_mut().insert(warning.clone()) {
                    self.progress.event(&Event::Warning(&warning));
                }
                None
            }
        })
    }
}

/// The client in `cell`, connecting to `config` first if it is empty.
fn connected<'c>(cell: &'c OnceCell<Client>, config: &ServerConfig) -> Result<&'c Client> {
    if let Some(client) = cell.get() {
        return Ok(client);
    }
    let client = Client::connect(config)?;
    Ok(cell.get_or_init(|| client))
}

/// Loads a model; returns it with the seconds the load took.
pub(crate) fn load_model(path: &Path, weights: WeightFormat, device: &str) -> Result<(Model, f64)> {
    let device = crate::model::parse_device(device)?;
    let start = Instant::now();
    let model = Model::load(path, weights, &device)?;
    Ok((model, start.elapsed().as_secs_f64()))
}
