//! The in-process backend: the candle [`Engine`] for label log-probs and the model's own
//! greedy [`Generator`] for answers, on a model loaded into this process.

use super::backend::{BackendInfo, ScoringBackend};
use super::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::model::{ChatTemplate, GenerateOptions, Generator, Model};
use crate::task::format::ChatRenderer;
use crate::task::{GenerationSpec, Task};

/// Scores with a model loaded in this process.
pub struct LocalBackend<'m> {
    engine: Engine<'m>,
    generator: Generator<'m>,
    label_ids: Vec<Vec<u32>>,
    answers_generated: u64,
}

impl<'m> LocalBackend<'m> {
    /// A backend over `model`.
    pub fn new(model: &'m Model, options: EngineOptions) -> Self {
        Self {
            engine: Engine::new(model, options),
            generator: Generator::new(model),
            label_ids: Vec::new(),
            answers_generated: 0,
        }
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.engine.model()
    }
}

impl ScoringBackend for LocalBackend<'_> {
    fn prepare(&mut self, task: &Task) -> Result<()> {
        let model = self.engine.model();
        self.label_ids = task
            .verbalizers()
            .iter()
            .map(|v| model.encode(v))
            .collect::<Result<Vec<_>>>()?;
        Ok(())
    }

    fn chat_renderer(&self) -> Result<ChatRenderer> {
        let model = self.engine.model();
        if model.chat_template.is_none() {
            return Err(Error::chat_template(
                &model.path,
                format!("{} has no chat template (GGUF key tokenizer.chat_template, or tokenizer_config.json's chat_template), so it cannot score a chat task: set format = \"completion\" (with a `template`) in the task file, or use a chat model", model.name),
            ));
        }
        let template = ChatTemplate::from_model(model)?;
        // The engine and the generator put BOS first themselves when the model asks for it.
        let leading = model
            .leading_ids()
            .first()
            .and_then(|&b| model.tokenizer.id_to_token(b));
        Ok(ChatRenderer::new(template, leading))
    }

    fn label_logprobs(&mut self, prefix: &str, suffixes: &[String]) -> Result<Vec<Vec<f32>>> {
        self.engine.score(prefix, suffixes, &self.label_ids)
    }

    /// The prefix's text is run once and its KV cache reused for every text whose tokens start
    /// with it (others are run whole).
    fn answers(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        spec: &GenerationSpec,
    ) -> Result<Vec<String>> {
        let model = self.engine.model();
        let options = GenerateOptions {
            max_new_tokens: spec.max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            stop: spec.stop.clone(),
        };
        let lead = model.leading_ids();
        // As in the engine: the prefix is tokenised without its trailing whitespace, which BPE
        // merges into the next word.
        let mut prefix_ids = lead.clone();
        prefix_ids.extend(model.encode(prefix.trim_end())?);
        let reuse = self.engine.options().prefix_reuse && prefix_ids.len() > lead.len();
        let mut prefix_cache = None;
        let mut out = Vec::with_capacity(suffixes.len());
        for suffix in suffixes {
            let mut ids = lead.clone();
            ids.extend(model.encode(&format!("{prefix}{suffix}"))?);
            let g = if reuse && ids.len() > prefix_ids.len() && ids.starts_with(&prefix_ids) {
                let (cache, done) = match &prefix_cache {
                    Some(c) => c,
                    None => {
                        let mut cache = model.arch.new_cache();
                        self.generator.prefill(&mut cache, &prefix_ids)?;
                        prefix_cache.insert((cache, prefix_ids.len()))
                    }
                };
                let mut cache = cache.clone();
                self.generator
                    .generate_after(&mut cache, &ids[*done..], &options, None)?
            } else {
                let mut cache = model.arch.new_cache();
                self.generator
                    .generate_after(&mut cache, &ids, &options, None)?
            };
            self.answers_generated += 1;
            out.push(g.text);
        }
        Ok(out)
    }

    fn scoring_model(&self) -> Option<crate::task::metric::ScoringModel> {
        Some(crate::task::metric::ScoringModel::File(
            self.engine.model().path.clone(),
        ))
    }

    fn model_name(&self) -> String {
        self.engine.model().name.clone()
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "in-process".into(),
            model: self.model_name(),
            url: None,
            scoring_method: "forward: label log-probs from one forward pass per example (labels as branches of the sequence)".into(),
            notes: Vec::new(),
        }
    }

    fn forward_passes(&self) -> u64 {
        self.engine.texts_scored + self.answers_generated
    }

    fn tokens_processed(&self) -> u64 {
        self.engine.tokens_processed
            + self.generator.tokens_prefilled
            + self.generator.tokens_generated
    }

    fn tokens_generated(&self) -> u64 {
        self.generator.tokens_generated
    }

    fn token_count(&self, text: &str) -> Option<usize> {
        self.engine.model().encode(text).ok().map(|ids| ids.len())
    }
}
