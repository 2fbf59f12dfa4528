//! The in-process backend: the candle [`Engine`] for label log-probs and the model's own
//! greedy [`Generator`] for answers, on a model loaded into this process.

use super::backend::{BackendInfo, ScoringBackend};
use super::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::model::{ChatTemplate, GenerateOptions, Generator, Model};
use crate::task::format::ChatRenderer;
use crate::task::{GenerationSpec, Task};

/// Answers decoded side by side by [`Generator::generate_batch`].
const GENERATION_ROWS: usize = crate::model::generate_batch::DEFAULT_ROWS;

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
    /// with it (others are run whole); on the native CPU path the answers are decoded together,
    /// many rows per forward pass, with the same tokens as one at a time.
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
        // Texts whose tokens start with the prefix's continue its cache; the others run whole.
        let mut shared: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut alone: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, suffix) in suffixes.iter().enumerate() {
            let mut ids = lead.clone();
            ids.extend(model.encode(&format!("{prefix}{suffix}"))?);
            if reuse && ids.len() > prefix_ids.len() && ids.starts_with(&prefix_ids) {
                shared.push((i, ids[prefix_ids.len()..].to_vec()));
            } else {
                alone.push((i, ids));
            }
        }
        let mut prefix_cache = model.arch.new_cache();
        if !shared.is_empty() {
            self.generator.prefill(&mut prefix_cache, &prefix_ids)?;
        }
        let mut out = vec![String::new(); suffixes.len()];
        for (cache, group) in [(prefix_cache, shared), (model.arch.new_cache(), alone)] {
            if group.is_empty() {
                continue;
            }
            let texts: Vec<String> = if self.generator.batches() {
                // Many answers per forward pass; each is the one decoded alone below.
                let ids: Vec<Vec<u32>> = group.iter().map(|(_, ids)| ids.clone()).collect();
                self.generator
                    .generate_batch(&cache, &ids, &options, GENERATION_ROWS)?
                    .into_iter()
                    .map(|g| g.text)
                    .collect()
            } else {
                let mut texts = Vec::with_capacity(group.len());
                for (_, ids) in &group {
                    let mut c = cache.clone();
                    let g = self.generator.generate_after(&mut c, ids, &options, None)?;
                    texts.push(g.text);
                }
                texts
            };
            for ((i, _), text) in group.iter().zip(texts) {
                out[*i] = text;
                self.answers_generated += 1;
            }
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
