//! Text generation with the local model: the model's own chat template, token-by-token decoding
//! on an owned KV cache (greedy or seeded top-p sampling), and the [`TextGenerator`] that
//! model-driven operators use.

use std::path::PathBuf;

use candle_core::Tensor;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::kv_cache::KvCache;
use super::loaded::Model;
use crate::chat::{ChatMessage, TextGenerator};
use crate::error::{Error, Result};

/// End-of-turn markers of common chat formats, tried when the template does not reveal its own.
const KNOWN_END_OF_TURN: [&str; 6] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
];

/// Instructions a chat-template render may execute (minijinja fuel). A Hugging Face template
/// renders a short chat in a few thousand; this stops an endless or exponential loop in well
/// under a second.
pub(crate) const TEMPLATE_FUEL: u64 = 2_000_000;
/// Nested macro calls and includes a render may make (HF templates use one or two).
pub(crate) const TEMPLATE_RECURSION: usize = 100;
/// Bytes a rendered chat may have (a prompt far beyond any model's context).
pub(crate) const TEMPLATE_MAX_OUTPUT: usize = 1 << 20;
/// Bytes a render may allocate, enforced when the binary installs
/// [`crate::limits::BudgetedAlloc`] (a string doubled in a loop is not bounded by fuel).
pub(crate) const TEMPLATE_MAX_ALLOC: usize = 256 << 20;

/// An `io::Write` that refuses to grow past [`TEMPLATE_MAX_OUTPUT`].
struct CappedOutput(Vec<u8>);

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > TEMPLATE_MAX_OUTPUT {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A model's own Jinja chat template (from GGUF `tokenizer.chat_template`), rendered the way
/// Hugging Face's `apply_chat_template` does (trim/lstrip blocks, `raise_exception`,
/// `bos_token`/`eos_token`, Python string methods).
///
/// The template is untrusted code from a downloaded file: it renders with no loader (so
/// `include`, `import` and `extends` reach nothing), no globals beyond the chat's own values and
/// `raise_exception`/`strftime_now` (a fixed date), and within [`TEMPLATE_FUEL`],
/// [`TEMPLATE_RECURSION`], [`TEMPLATE_MAX_OUTPUT`] and [`TEMPLATE_MAX_ALLOC`].
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
    origin: PathBuf,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The chat template of `model`; an error naming the model file when it has none or it does
    /// not parse.
    pub fn from_model(model: &Model) -> Result<Self> {
        let source = model.chat_template.clone().ok_or_else(|| {
            Error::chat_template(
                &model.path,
                "the model has no chat template (GGUF key tokenizer.chat_template); use an instruct/chat model",
            )
        })?;
        let token = |id: Option<u32>| {
            id.and_then(|i| model.tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        Self::new(
            source,
            token(model.special.bos),
            token(model.special.eos),
            model.path.clone(),
        )
    }

    /// A template from its Jinja `source`; `origin` names where it came from in errors.
    pub fn new(
        source: String,
        bos_token: String,
        eos_token: String,
        origin: PathBuf,
    ) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION);
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<minijinja::Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        // Llama 3.x templates print today's date; a fixed one keeps prompts reproducible.
        env.add_function("strftime_now", |_format: String| "26 Jul 2024".to_string());
        env.add_template_owned("chat", source).map_err(|e| {
            Error::chat_template(
                &origin,
                format!("the chat template does not parse: {e}; fix tokenizer.chat_template"),
            )
        })?;
        Ok(Self {
            env,
            bos_token,
            eos_token,
            origin,
        })
    }

    /// Where the template came from (the model file), for error messages.
    pub(crate) fn origin(&self) -> &std::path::Path {
        &self.origin
    }

    /// The text of `messages`, ending with the assistant header when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let fail = |e: minijinja::Error| {
            let hint = match e.kind() {
                minijinja::ErrorKind::OutOfFuel => format!(
                    "it ran more than {TEMPLATE_FUEL} instructions (an endless or exponential loop); the template is broken or hostile: fix tokenizer.chat_template or use another model"
                ),
                minijinja::ErrorKind::InvalidOperation
                    if e.to_string().contains("recursion limit") =>
                {
                    format!(
                        "it nests more than {TEMPLATE_RECURSION} calls; the template is broken or hostile: fix tokenizer.chat_template or use another model"
                    )
                }
                minijinja::ErrorKind::WriteFailure => format!(
                    "its output passed {TEMPLATE_MAX_OUTPUT} bytes; the template is broken or hostile: fix tokenizer.chat_template or use another model"
                ),
                _ => "check the roles and order of the messages".to_string(),
            };
            let e = e.to_string();
            let e = e.lines().next().unwrap_or_default();
            Error::chat_template(
                &self.origin,
                format!("cannot render the chat template: {e}; {hint}"),
            )
        };
        let template = self.env.get_template("chat").map_err(fail)?;
        let budget = crate::limits::Budget::new(
            TEMPLATE_MAX_ALLOC,
            &format!(
                "{}: the chat template allocated more than {} MiB while rendering; the template is broken or hostile: fix tokenizer.chat_template or use another model",
                self.origin.display(),
                TEMPLATE_MAX_ALLOC >> 20
            ),
        );
        let mut out = CappedOutput(Vec::new());
        template
            .render_captured_to(
                minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                },
                &mut out,
            )
            .map_err(fail)?;
        drop(budget);
        String::from_utf8(out.0).map_err(|_| {
            Error::chat_template(
                &self.origin,
                "the chat template rendered invalid UTF-8; fix tokenizer.chat_template",
            )
        })
    }
}

/// How to decode a continuation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax, the first index on ties).
    pub temperature: f64,
    /// Nucleus sampling: sample from the smallest set of tokens whose probability reaches this
    /// (1 = the whole vocabulary). Ignored when greedy.
    pub top_p: f64,
    /// Stop as soon as the text contains one of these (it is cut before the stop string).
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            stop: Vec::new(),
        }
    }
}

/// Why decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// EOS or the model's end-of-turn token.
    EndOfText,
    /// One of the stop strings appeared.
    StopString,
    /// `max_new_tokens` were generated.
    Length,
    /// The model's position table is full.
    Context,
}

/// One decoded continuation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Generation {
    /// The generated text (stop string and end-of-turn token excluded).
    pub text: String,
    /// Tokens run before decoding (after any cache the caller gave).
    pub prompt_tokens: usize,
    /// Tokens generated (the end-of-turn token included, when one was produced).
    pub new_tokens: usize,
    /// Why decoding stopped.
    pub stop_reason: StopReason,
}

/// Decodes continuations token by token with a model, on a KV cache it owns per call.
pub struct Generator<'m> {
    model: &'m Model,
    stop_ids: Vec<u32>,
    /// Tokens generated so far.
    pub tokens_generated: u64,
    /// Prompt tokens run through the model so far.
    pub tokens_prefilled: u64,
}

impl<'m> Generator<'m> {
    /// A generator over `model` that stops at EOS and at the end-of-turn token of its chat
    /// template (found by rendering an assistant turn; `<|im_end|>` for ChatML models).
    pub fn new(model: &'m Model) -> Self {
        let mut stop_ids: Vec<u32> = model.special.eos.into_iter().collect();
        if let Some(id) = end_of_turn_id(model) {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        Self {
            model,
            stop_ids,
            tokens_generated: 0,
            tokens_prefilled: 0,
        }
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Token ids that end a generation (EOS, end-of-turn).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Continues `text` (BOS prepended when the model asks for it and the text lacks it).
    /// `rng` is used only when `options.temperature > 0`; sampling without one is an error.
    pub fn generate(
        &mut self,
        text: &str,
        options: &GenerateOptions,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Generation> {
        let mut ids = self.model.leading_ids();
        let starts_with_bos = self
            .model
            .special
            .bos
            .and_then(|b| self.model.tokenizer.id_to_token(b))
            .is_some_and(|b| !b.is_empty() && text.starts_with(&b));
        if starts_with_bos {
            ids.clear();
        }
        ids.extend(self.model.encode(text)?);
        let mut cache = self.model.arch.new_cache();
        self.generate_after(&mut cache, &ids, options, rng)
    }

    /// Runs `ids` after what `cache` holds (a shared prompt prefix, say) and decodes from there;
    /// the cache is extended in place (clone it first to keep the prefix).
    pub fn generate_after(
        &mut self,
        cache: &mut KvCache,
        ids: &[u32],
        options: &GenerateOptions,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Generation> {
        if options.temperature > 0.0 && rng.is_none() {
            return Err(Error::Internal(
                "sampling (temperature > 0) needs a seeded random stream; pass one or set temperature = 0".into(),
            ));
        }
        if !options.temperature.is_finite() || options.temperature < 0.0 {
            return Err(Error::Usage(format!(
                "temperature must be a finite number >= 0, got {}",
                options.temperature
            )));
        }
        if ids.is_empty() && cache.is_empty() {
            return Err(Error::Usage(
                "nothing to continue: the prompt encodes to no tokens".into(),
            ));
        }
        let max_pos = self.model.arch.max_positions();
        let mut generated: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut reason = StopReason::Length;
        let mut last = if ids.is_empty() {
            None
        } else if cache.len() + ids.len() > max_pos {
            return Err(Error::Usage(format!(
                "the prompt has {} tokens, more than the model's {max_pos} positions; shorten it",
                cache.len() + ids.len()
            )));
        } else {
            self.tokens_prefilled += ids.len() as u64;
            Some(self.step(cache, ids)?)
        };
        while generated.len() < options.max_new_tokens {
            let Some(logp) = last.take() else {
                // A caller-built cache without new tokens gives nothing to predict from.
                return Err(Error::Internal(
                    "nothing to continue: give at least one token after the cache".into(),
                ));
            };
            let next = pick(&logp, options, rng.as_deref_mut());
            generated.push(next);
            self.tokens_generated += 1;
            if self.stop_ids.contains(&next) {
                reason = StopReason::EndOfText;
                break;
            }
            text = self.model.decode(&generated)?;
            if let Some(at) = first_stop(&text, &options.stop) {
                text.truncate(at);
                reason = StopReason::StopString;
                break;
            }
            if generated.len() >= options.max_new_tokens {
                break;
            }
            if cache.len() + 1 > max_pos {
                reason = StopReason::Context;
                break;
            }
            last = Some(self.step(cache, &[next])?);
        }
        Ok(Generation {
            text,
            prompt_tokens: ids.len(),
            new_tokens: generated.len(),
            stop_reason: reason,
        })
    }

    /// Runs `ids` after what `cache` holds (a prompt prefix to share between generations).
    pub fn prefill(&mut self, cache: &mut KvCache, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if cache.len() + ids.len() > self.model.arch.max_positions() {
            return Err(Error::Usage(format!(
                "the prompt has {} tokens, more than the model's {} positions; shorten it",
                cache.len() + ids.len(),
                self.model.arch.max_positions()
            )));
        }
        self.tokens_prefilled += ids.len() as u64;
        self.step(cache, ids)?;
        Ok(())
    }

    /// Runs `ids` after `cache` (batch 1) and returns the next-token log-probs after the last.
    fn step(&self, cache: &mut KvCache, ids: &[u32]) -> Result<Vec<f32>> {
        let arch = &self.model.arch;
        let device = arch.device();
        let p = cache.len();
        let s = ids.len();
        let kv = p + s;
        let positions: Vec<u32> = (p..kv).map(|x| x as u32).collect();
        let mut mask = vec![0f32; s * kv];
        for i in 0..s {
            mask[i * kv + p + i + 1..(i + 1) * kv].fill(f32::NEG_INFINITY);
        }
        let tokens = Tensor::new(ids, device)?.unsqueeze(0)?;
        let positions = Tensor::new(positions.as_slice(), device)?.unsqueeze(0)?;
        let mask = Tensor::from_vec(mask, (1, 1, s, kv), device)?;
        let hidden = arch.forward(&tokens, &positions, &mask, cache)?;
        let last = hidden.squeeze(0)?.narrow(0, s - 1, 1)?;
        Ok(arch.log_probs(&last)?.squeeze(0)?.to_vec1()?)
    }
}

/// The token that closes an assistant turn in the model's chat template: what follows the
/// content of a rendered assistant message, when it is one token; else the first known
/// end-of-turn marker that is a single token of the vocabulary.
fn end_of_turn_id(model: &Model) -> Option<u32> {
    const MARK: &str = "PROMPTEVO_MARK";
    let single = |s: &str| -> Option<u32> {
        let ids = model.encode(s).ok()?;
        (ids.len() == 1).then(|| ids[0])
    };
    if let Ok(template) = ChatTemplate::from_model(model) {
        let messages = [ChatMessage::user("Hi"), ChatMessage::assistant(MARK)];
        if let Ok(text) = template.render(&messages, false) {
            if let Some(at) = text.find(MARK) {
                let after = text[at + MARK.len()..].trim_start();
                let first = after.split_whitespace().next().unwrap_or("");
                if let Some(id) = model.tokenizer.token_to_id(first) {
                    return Some(id);
                }
                if let Some(id) = model.encode(after).ok().and_then(|ids| {
                    let first = *ids.first()?;
                    let piece = model.tokenizer.id_to_token(first)?;
                    KNOWN_END_OF_TURN.contains(&piece.as_str()).then_some(first)
                }) {
                    return Some(id);
                }
            }
        }
    }
    KNOWN_END_OF_TURN
        .iter()
        .filter(|m| model.tokenizer.token_to_id(m).is_some())
        .find_map(|m| single(m))
}

/// Byte offset of the earliest stop string in `text`.
pub(crate) fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// The next token: argmax (first on ties) when greedy, else top-p sampling at the temperature.
fn pick(logp: &[f32], options: &GenerateOptions, rng: Option<&mut ChaCha8Rng>) -> u32 {
    match rng {
        Some(rng) if options.temperature > 0.0 => {
            sample_top_p(logp, options.temperature, options.top_p, rng)
        }
        _ => argmax(logp),
    }
}

/// Index of the largest value (the first on ties; NaN never wins).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] || xs[best].is_nan() && !x.is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Samples from softmax(logp / temperature) restricted to its top-p nucleus. Tokens are ranked
/// by probability, then by id, so the draw depends only on the model's output and `rng`.
pub(crate) fn sample_top_p(
    logp: &[f32],
    temperature: f64,
    top_p: f64,
    rng: &mut ChaCha8Rng,
) -> u32 {
    let max = logp
        .iter()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if !max.is_finite() {
        return argmax(logp);
    }
    let mut probs: Vec<(u32, f64)> = logp
        .iter()
        .enumerate()
        .filter(|(_, x)| x.is_finite())
        .map(|(i, &x)| (i as u32, ((x - max) as f64 / temperature).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_p = if top_p.is_finite() && top_p > 0.0 {
        top_p.min(1.0)
    } else {
        1.0
    };
    let mut kept = 0;
    let mut mass = 0.0;
    for (_, p) in &probs {
        kept += 1;
        mass += p / z;
        if mass >= top_p {
            break;
        }
    }
    let nucleus = &probs[..kept.max(1)];
    let total: f64 = nucleus.iter().map(|p| p.1).sum();
    let mut r = rng.gen::<f64>() * total;
    for (id, p) in nucleus {
        if r < *p {
            return *id;
        }
        r -= p;
    }
    nucleus[nucleus.len() - 1].0
}

/// A [`TextGenerator`] over the local model: renders the chat with the model's own template and
/// samples the assistant's reply (returned raw; cleaning it is the operators' job).
pub struct ChatGenerator<'m> {
    /// The decoder.
    pub generator: Generator<'m>,
    /// The model's chat template.
    pub template: ChatTemplate,
    /// How replies are decoded.
    pub options: GenerateOptions,
    /// Reply tokens generated so far.
    pub tokens_generated: u64,
}

impl<'m> ChatGenerator<'m> {
    /// A chat generator over `model`; an error when the model has no usable chat template.
    pub fn new(model: &'m Model, options: GenerateOptions) -> Result<Self> {
        Ok(Self {
            generator: Generator::new(model),
            template: ChatTemplate::from_model(model)?,
            options,
            tokens_generated: 0,
        })
    }

    /// The reply to `messages` with the library's error type.
    pub fn reply(&mut self, messages: &[ChatMessage], rng: &mut ChaCha8Rng) -> Result<Generation> {
        let text = self.template.render(messages, true)?;
        let g = self.generator.generate(&text, &self.options, Some(rng))?;
        self.tokens_generated += g.new_tokens as u64;
        Ok(g)
    }
}

impl TextGenerator for ChatGenerator<'_> {
    fn chat(&mut self, messages: &[ChatMessage], rng: &mut ChaCha8Rng) -> Result<String> {
        self.reply(messages, rng).map(|g| g.text)
    }

    fn tokens_generated(&self) -> u64 {
        self.tokens_generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0]), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p = [0.7, 0.2, 0.1]: top_p 0.5 keeps only token 0.
        let logp: Vec<f32> = [0.7f32, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(sample_top_p(&logp, 1.0, 0.5, &mut rng), 0);
        }
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[sample_top_p(&logp, 1.0, 1.0, &mut rng) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
    }

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        assert_eq!(first_stop("ab\ncd.", &[".".into(), "\n".into()]), Some(2));
        assert_eq!(first_stop("abc", &["".into()]), None);
    }

    #[test]
    fn template_errors_are_reported_not_panicked() {
        let bad = ChatTemplate::new("{% for %}".into(), "".into(), "".into(), "m.gguf".into());
        assert!(bad.unwrap_err().to_string().contains("m.gguf"));
        let raising = ChatTemplate::new(
            "{{ raise_exception('roles must alternate') }}".into(),
            "".into(),
            "".into(),
            "m.gguf".into(),
        )
        .unwrap();
        let err = raising.render(&[], true).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }
}
