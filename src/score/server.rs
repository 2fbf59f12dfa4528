//! The OpenAI-compatible server backend: label log-probs and greedy answers through
//! `/completions`, many requests in flight so the server's continuous batching is fed.
//!
//! Servers differ in how (and whether) they give the log-probs of a prompt's own tokens, so
//! [`ServerBackend::prepare`] probes and says which method it uses:
//!
//! - `echo`: `echo: true, logprobs` returns the prompt's tokens with their log-probs (vLLM,
//!   SGLang); any label, one request per (example, label).
//! - `prompt_logprobs`: vLLM's extension, the same information in another field.
//! - `top_logprobs`: the first generated position's top-k log-probs after the example's text
//!   (`max_tokens: 1`); one request per example, one-token labels only. Read from OpenAI's legacy
//!   shape or llama.cpp's server's `logprobs.content` (which also refuses `echo`).
//!
//! A self-check on a known string decides whether a prompt-token method can be trusted: the
//! value a server gives for " Paris" in "The capital of France is Paris" must equal the next-token
//! log-prob of " Paris" after "The capital of France is". llama-cpp-python 0.3.36 fails it (its
//! echo values are shifted by one position: the value for " capital" is p(" capital" | "The
//! capital")), so its echo is never used.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::backend::{BackendInfo, ScoringBackend};
use crate::error::{Error, Result};
use crate::model::generate::ChatTemplate;
use crate::model::template_file::read_chat_template;
use crate::remote::Client;
use crate::task::format::ChatRenderer;
use crate::task::metric::common::LabelScorer;
use crate::task::{GenerationSpec, Task};

/// The self-check's context and continuation: a fact every language model finds likely, so
/// the continuation is in any server's top-k and a shifted value differs by nats.
const CHECK_CONTEXT: &str = "The capital of France is";
/// See [`CHECK_CONTEXT`].
const CHECK_CONTINUATION: &str = " Paris";
/// Largest difference (nats) between two ways of computing the same log-prob that the
/// self-check accepts: batched and unbatched GPU kernels differ by about 1e-3; a shifted value
/// is off by several nats.
const CHECK_TOLERANCE: f64 = 0.05;
/// What a label is tokenised after when the server counts its tokens: a label follows text that
/// ends like this in every task template.
const LABEL_ANCHOR: &str = "Answer:";
/// How many top log-probs the `top_logprobs` method asks for: vLLM's default `max_logprobs`.
pub const TOP_K: usize = 20;
/// How many it asks for again when a label is not among the first [`TOP_K`], where the server
/// allows it (llama-cpp-python does; a chat model's labels at the start of its turn are often
/// below its top 20, e.g. "positive" after "The", "I", "This" ...).
pub(crate) const WIDE_TOP_K: usize = 1000;

/// How label log-probs are read from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `/completions` with `echo` and `logprobs`: the prompt's own token log-probs.
    Echo,
    /// vLLM's `prompt_logprobs`.
    PromptLogprobs,
    /// The first generated position's `top_logprobs`.
    TopLogprobs,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Echo => "echo",
            Method::PromptLogprobs => "prompt_logprobs",
            Method::TopLogprobs => "top_logprobs",
        })
    }
}

/// What the start-up probe found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Probe {
    /// log p(" Paris" | "The capital of France is") from the first generated position's
    /// top log-probs (None: the server gives no top log-probs).
    pub next_token: Option<f64>,
    /// The value echo gives the same token (None: no echo log-probs).
    pub echo: Option<f64>,
    /// The value `prompt_logprobs` gives it (None: not supported).
    pub prompt_logprobs: Option<f64>,
    /// Whether echo's value is p(" Paris" | "... Paris"): shifted by one position.
    pub echo_shifted: bool,
}

impl Probe {
    /// Whether a prompt-token value agrees with the next-token reference.
    fn agrees(&self, value: Option<f64>) -> bool {
        matches!((value, self.next_token), (Some(v), Some(r)) if (v - r).abs() <= CHECK_TOLERANCE)
    }
}

/// Scores through an OpenAI-compatible server.
pub struct ServerBackend {
    client: Client,
    concurrency: usize,
    method: Option<Method>,
    reason: String,
    notes: Vec<String>,
    labels: Vec<String>,
    label_tokens: Vec<usize>,
    texts: u64,
    tokens: u64,
    generated: u64,
    outside_top: u64,
    chat_template: Option<PathBuf>,
    /// Whether the server answers a request for [`WIDE_TOP_K`] top log-probs.
    wide_allowed: bool,
    /// Whether a label was outside the top [`TOP_K`] once already: later requests ask for
    /// [`WIDE_TOP_K`] at once (the values are the same either way).
    wide_first: bool,
    wide_requests: u64,
}

impl ServerBackend {
    /// A backend over `client` with `concurrency` requests in flight.
    pub fn new(client: Client, concurrency: usize) -> Self {
        Self {
            client,
            concurrency: concurrency.max(1),
            method: None,
            reason: String::new(),
            notes: Vec::new(),
            labels: Vec::new(),
            label_tokens: Vec::new(),
            texts: 0,
            tokens: 0,
            generated: 0,
            outside_top: 0,
            chat_template: None,
            wide_allowed: false,
            wide_first: false,
            wide_requests: 0,
        }
    }

    /// Chat tasks render through the chat template read from `path` (the served model's GGUF,
    /// model folder, tokenizer_config.json or a Jinja file); None: the server's `/props`.
    pub(crate) fn with_chat_template(mut self, path: Option<PathBuf>) -> Self {
        self.chat_template = path;
        self
    }

    /// The method chosen by [`ScoringBackend::prepare`] (None before, or for generation tasks).
    pub fn method(&self) -> Option<Method> {
        self.method
    }

    /// Runs the self-check on the known string.
    pub fn probe(&self) -> Result<Probe> {
        let full = format!("{CHECK_CONTEXT}{CHECK_CONTINUATION}");
        let next_token = self
            .next_token_logprobs(CHECK_CONTEXT)?
            .and_then(|top| top.get(CHECK_CONTINUATION).copied());
        let echoed = self.complete(request(Method::Echo, &full)).ok();
        let context = CHECK_CONTEXT.chars().count();
        let echo = echoed.as_ref().and_then(|v| echo_sum(v, context, &full));
        // Shifted: the top log-probs listed at the context's last token are those that predict
        // the continuation, i.e. every value sits one position early.
        let echo_shifted = match (echoed.as_ref(), next_token) {
            (Some(v), Some(reference)) => echo_top_at(v, context, &full)
                .and_then(|top| top.get(CHECK_CONTINUATION).copied())
                .is_some_and(|x| (x - reference).abs() <= CHECK_TOLERANCE),
            _ => false,
        };
        let prompt_logprobs = self.prompt_logprobs(&full, 1).ok().flatten();
        Ok(Probe {
            next_token,
            echo,
            prompt_logprobs,
            echo_shifted,
        })
    }

    /// One `/completions` request.
    fn complete(&self, body: Value) -> Result<Value> {
        let mut body = body;
        body["model"] = json!(self.client.model());
        self.client.post("completions", &body)
    }

    /// The first generated position's top log-probs after `text` (None: the server gives none).
    fn next_token_logprobs(&self, text: &str) -> Result<Option<BTreeMap<String, f64>>> {
        let v = self.complete(request(Method::TopLogprobs, text))?;
        Ok(top_logprobs(&v))
    }

    /// Sum of vLLM `prompt_logprobs` of the last `n` prompt tokens of `full` (None: the server
    /// gives none).
    fn prompt_logprobs(&self, full: &str, n: usize) -> Result<Option<f64>> {
        let v = self.complete(request(Method::PromptLogprobs, full))?;
        Ok(prompt_logprobs_sum(&v, n))
    }

    /// Tokens of `text` on the server, counted with its `/tokenize` (vLLM's and llama.cpp's, sent
    /// both's field names) or llama-cpp-python's `/extras/tokenize`; None when it has neither.
    fn token_count(&self, text: &str) -> Option<usize> {
        let tokenize = self.client.post_optional(
            "tokenize",
            &json!({
                "model": self.client.model(), "prompt": text, "content": text,
                "add_special_tokens": false, "add_special": false,
            }),
        );
        let v = tokenize.filter(|v| v["tokens"].is_array()).or_else(|| {
            self.client.post_optional(
                "extras/tokenize",
                &json!({"model": self.client.model(), "input": text}),
            )
        })?;
        v["tokens"].as_array().map(Vec::len)
    }

    /// Tokens each label adds after a context on the server (None: it cannot tell). A label is
    /// counted after [`LABEL_ANCHOR`], not alone: a SentencePiece tokenizer with a dummy prefix
    /// splits " positive" alone into two tokens, and a BOS the server adds cancels out.
    fn label_token_counts(&self, labels: &[String]) -> Vec<Option<usize>> {
        let anchor = self.token_count(LABEL_ANCHOR);
        labels
            .iter()
            .map(|label| {
                let (with, without) = (
                    self.token_count(&format!("{LABEL_ANCHOR}{label}"))?,
                    anchor?,
                );
                // A server that ignored the text (an empty list for both) has no usable tokenizer.
                (with > without || label.is_empty()).then(|| with - without)
            })
            .collect()
    }

    /// Runs `job(i)` for `i` in `0..n` with up to `concurrency` in flight; results in order, the
    /// first error (by index) if any fails. Once one fails no new job starts.
    fn in_flight<T: Send>(
        &self,
        n: usize,
        job: impl Fn(usize) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.min(n) {
                s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = job(i);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                });
            }
        });
        let all = results
            .into_inner()
            .map_err(|_| self.client.error("a request thread panicked".into()))?;
        // Jobs left unstarted (None) follow a failure, which this returns: the failed job with
        // the lowest index.
        let mut out = Vec::with_capacity(n);
        for r in all.into_iter().flatten() {
            out.push(r?);
        }
        if out.len() < n {
            return Err(self
                .client
                .error("a request failed and the batch was abandoned".into()));
        }
        Ok(out)
    }

    /// Prepares the backend to score `verbalizers` as the continuations of
    /// [`ScoringBackend::label_logprobs`] (what [`ScoringBackend::prepare`] does for a
    /// classification task's verbalisers; a judge metric asks for its own labels this way).
    pub(crate) fn prepare_labels(&mut self, verbalizers: &[String]) -> Result<()> {
        self.reset_notes();
        self.choose(verbalizers)
    }

    /// Starts the notes afresh with the one about requests in flight.
    fn reset_notes(&mut self) {
        self.notes.clear();
        self.notes.push(format!(
            "{} requests in flight: a server that batches concurrent requests (continuous batching) may change log-probs in their last digits, so a rerun can differ where two labels nearly tie",
            self.concurrency
        ));
    }

    /// Chooses the scoring method for these labels from the probe.
    fn choose(&mut self, verbalizers: &[String]) -> Result<()> {
        let probe = self.probe()?;
        let url = self.client.url().to_string();
        let fmt = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.4}"));
        let check = format!(
            "self-check on {:?}: next-token log-prob of {:?} {}, echo {}, prompt_logprobs {}",
            format!("{CHECK_CONTEXT}{CHECK_CONTINUATION}"),
            CHECK_CONTINUATION,
            fmt(probe.next_token),
            fmt(probe.echo),
            fmt(probe.prompt_logprobs)
        );
        let counts = self.label_token_counts(verbalizers);
        self.labels = verbalizers.to_vec();
        self.label_tokens = counts.iter().map(|c| c.unwrap_or(1)).collect();
        if probe.agrees(probe.echo) {
            self.method = Some(Method::Echo);
            self.reason = format!("echo passed the {check}");
            return Ok(());
        }
        let echo_problem = match (probe.echo, probe.echo_shifted) {
            (None, _) => "the server gives no echo log-probs".to_string(),
            (Some(_), true) => "its echo log-probs are shifted by one position (the log-probs listed at a token are those that predict the next one, as llama-cpp-python 0.3.36's server gives them), so echo is not used".to_string(),
            (Some(_), false) => "its echo log-probs disagree with its next-token log-probs, so echo is not used".to_string(),
        };
        if probe.agrees(probe.prompt_logprobs) && counts.iter().all(Option::is_some) {
            self.method = Some(Method::PromptLogprobs);
            self.reason = format!("{echo_problem}; prompt_logprobs passed the {check}");
            return Ok(());
        }
        if probe.next_token.is_none() {
            return Err(Error::Server {
                url,
                message: format!("cannot score labels: {echo_problem}, and it returns no top_logprobs for a generated token; use a server with echo log-probs (vLLM, SGLang) or top_logprobs (llama.cpp, llama-cpp-python)"),
            });
        }
        if let Some((label, n)) = verbalizers
            .iter()
            .zip(&counts)
            .find_map(|(v, c)| c.filter(|&n| n != 1).map(|n| (v, n)))
        {
            return Err(Error::Server {
                url,
                message: format!("the verbaliser {label:?} is {n} tokens on this server, and only one-token labels can be scored from the first generated position's top_logprobs ({echo_problem}); use one-token verbalisers in the task file, or a server whose echo log-probs pass the self-check (vLLM, SGLang)"),
            });
        }
        self.method = Some(Method::TopLogprobs);
        // A label outside the top 20 is asked again with a wider top, where the server allows.
        self.wide_allowed = self
            .complete(top_request(CHECK_CONTEXT, WIDE_TOP_K))
            .ok()
            .and_then(|v| top_logprobs(&v))
            .is_some_and(|top| top.len() > TOP_K);
        let wide = if self.wide_allowed {
            format!(", asked again with the top {WIDE_TOP_K} when a label is not among them")
        } else {
            format!(" (the server refuses a top {WIDE_TOP_K}: a label outside the top {TOP_K} takes the smallest of them)")
        };
        self.reason = format!("{echo_problem}; the first generated position's top_logprobs (top {TOP_K}{wide}) are used ({check})");
        if counts.iter().any(Option::is_none) {
            self.notes.push("the server has no tokenize endpoint, so the labels could not be checked to be one token each; a label is matched by its text among the top log-probs".into());
        }
        Ok(())
    }
}

/// The `/completions` body (less the model) that reads `prompt`'s log-probs by `method`: the
/// start-up self-check sends the very requests that scoring sends.
fn request(method: Method, prompt: &str) -> Value {
    match method {
        Method::Echo => json!({
            "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": 1, "echo": true,
        }),
        Method::PromptLogprobs => json!({
            "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0,
        }),
        Method::TopLogprobs => top_request(prompt, TOP_K),
    }
}

/// The `/completions` body (less the model) that reads the `k` top log-probs of the first
/// position generated after `prompt`.
fn top_request(prompt: &str, k: usize) -> Value {
    json!({ "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": k })
}

/// The log-probs of an OpenAI-style `{token: log-prob}` object (entries that are not numbers
/// left out).
fn logprob_map(top: &serde_json::Map<String, Value>) -> BTreeMap<String, f64> {
    top.iter()
        .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
        .collect()
}

/// The first generated position's top log-probs in a `/completions` answer: OpenAI's legacy
/// shape (`logprobs.top_logprobs[0]` maps token text to log-prob: vLLM, SGLang,
/// llama-cpp-python) or llama.cpp's server's (`logprobs.content[0].top_logprobs` lists
/// `{token, logprob}`). Two entries with the same text keep the larger value.
fn top_logprobs(v: &Value) -> Option<BTreeMap<String, f64>> {
    let logprobs = &v["choices"][0]["logprobs"];
    let map = if let Some(top) = logprobs["top_logprobs"].get(0).and_then(Value::as_object) {
        logprob_map(top)
    } else {
        let mut map = BTreeMap::new();
        for e in logprobs["content"][0]["top_logprobs"].as_array()? {
            if let (Some(t), Some(x)) = (e["token"].as_str(), e["logprob"].as_f64()) {
                let kept = map.entry(t.to_string()).or_insert(x);
                *kept = kept.max(x);
            }
        }
        map
    };
    (!map.is_empty()).then_some(map)
}

/// An echoed token: its character span in the prompt, its log-prob (None: null, as for the
/// first token) and its index in the answer's arrays.
struct EchoToken {
    start: i64,
    end: i64,
    logprob: Option<f64>,
    index: usize,
}

/// The echoed tokens of an answer to the prompt `full`, with their spans anchored at the
/// prompt's end: a server counts offsets over its decoded tokens, so a BOS it decodes ("<s>") or
/// a character it decodes as several (byte-fallback replacement characters) shifts every later
/// offset. The last prompt token is the one `usage.completion_tokens` before the end (vLLM lists
/// the generated tokens too) or else the last (llama-cpp-python lists only the prompt's),
/// whichever is a suffix of the prompt; without either the offsets are taken as they are. None
/// when the arrays are missing or of different lengths.
fn echo_tokens(v: &Value, full: &str) -> Option<Vec<EchoToken>> {
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array()?;
    let offsets = lp["text_offset"].as_array()?;
    let values = lp["token_logprobs"].as_array()?;
    if tokens.len() != offsets.len() || tokens.len() != values.len() {
        return None;
    }
    let mut spans = Vec::with_capacity(tokens.len());
    for (t, o) in tokens.iter().zip(offsets) {
        let start = i64::try_from(o.as_u64()?).ok()?;
        spans.push((start, start + t.as_str()?.chars().count() as i64));
    }
    let generated = v["usage"]["completion_tokens"]
        .as_u64()
        .and_then(|g| usize::try_from(g).ok());
    let last_prompt_token = [generated, Some(0)].into_iter().flatten().find_map(|g| {
        let last = spans.len().checked_sub(g + 1)?;
        let text = tokens[last].as_str()?;
        (!text.is_empty() && full.ends_with(text)).then_some(last)
    });
    let shift = last_prompt_token.map_or(0, |last| spans[last].1 - full.chars().count() as i64);
    Some(
        spans
            .into_iter()
            .zip(values)
            .enumerate()
            .map(|(index, ((start, end), x))| EchoToken {
                start: start - shift,
                end: end - shift,
                logprob: x.as_f64(),
                index,
            })
            .collect(),
    )
}

/// Sum of echo log-probs of the tokens of the prompt `full` that end after character `context`
/// (the continuation's tokens; generated tokens start at or after the prompt's end).
fn echo_sum(v: &Value, context: usize, full: &str) -> Option<f64> {
    let (from, to) = (context as i64, full.chars().count() as i64);
    let mut sum = 0.0;
    let mut any = false;
    for t in echo_tokens(v, full)? {
        if t.start < to && t.end > from {
            sum += t.logprob?;
            any = true;
        }
    }
    any.then_some(sum)
}

/// The echo top log-probs listed at the token that ends at character `end` of the prompt `full`.
fn echo_top_at(v: &Value, end: usize, full: &str) -> Option<BTreeMap<String, f64>> {
    let j = echo_tokens(v, full)?
        .into_iter()
        .find(|t| t.end == end as i64)?
        .index;
    let top = v["choices"][0]["logprobs"]["top_logprobs"]
        .get(j)?
        .as_object()?;
    Some(logprob_map(top))
}

/// Sum of vLLM `prompt_logprobs` of the last `n` prompt tokens: each entry maps token ids to
/// `{logprob, ...}`; with `prompt_logprobs: 0` the prompt's own token is the only entry.
fn prompt_logprobs_sum(v: &Value, n: usize) -> Option<f64> {
    let entries = v["choices"][0]["prompt_logprobs"]
        .as_array()
        .or_else(|| v["prompt_logprobs"].as_array())?;
    if n == 0 || entries.len() < n {
        return None;
    }
    let mut sum = 0.0;
    for e in &entries[entries.len() - n..] {
        let (_, x) = e.as_object()?.iter().next()?;
        sum += x["logprob"].as_f64().or_else(|| x.as_f64())?;
    }
    Some(sum)
}

/// The answer cut before the earliest stop string (a server may return it whole).
fn cut_at_stop(text: &str, stop: &[String]) -> String {
    let at = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
        .unwrap_or(text.len());
    text[..at].to_string()
}

/// Prompt plus completion tokens of an answer's usage (0 when it has none).
fn usage(v: &Value) -> u64 {
    v["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
        + v["usage"]["completion_tokens"].as_u64().unwrap_or(0)
}

/// A server as a judge's [`LabelScorer`] of `labels` (the completion form, one request in
/// flight): [`ServerBackend::prepare_labels`] probes how to score them.
pub fn label_scorer(client: Client, labels: &[String]) -> Result<Box<dyn LabelScorer>> {
    let mut backend = ServerBackend::new(client, 1);
    backend.prepare_labels(labels)?;
    Ok(Box::new(backend))
}

impl LabelScorer for ServerBackend {
    fn label_logprobs(&mut self, prefix: &str, suffixes: &[String]) -> Result<Vec<Vec<f32>>> {
        ScoringBackend::label_logprobs(self, prefix, suffixes)
    }
}

impl ScoringBackend for ServerBackend {
    fn prepare(&mut self, task: &Task) -> Result<()> {
        if task.is_generation() {
            self.reset_notes();
            self.method = None;
            self.reason = "generation task: greedy /completions (temperature 0)".into();
            return Ok(());
        }
        self.prepare_labels(task.verbalizers())
    }

    /// Chat tasks are rendered here, not by the server's chat endpoint (which gives no
    /// log-probs of a label as the start of the assistant turn comparable with the in-process
    /// engine's): the rendered text goes to `/completions` like any prompt, its special tokens
    /// parsed by the server. The template is read from `--chat-template`'s file, else from the
    /// server's `/props` (llama.cpp's llama-server); with neither, one error saying so.
    fn chat_renderer(&self) -> Result<ChatRenderer> {
        if let Some(path) = &self.chat_template {
            let file = read_chat_template(path)?;
            return Ok(ChatRenderer::new(file.template, file.leading));
        }
        let props = self.client.get_optional("props");
        let source = props
            .as_ref()
            .and_then(|p| p["chat_template"].as_str())
            .filter(|t| !t.trim().is_empty());
        let Some(source) = source else {
            return Err(self.client.error(
                "to score a chat task (format = \"chat\") the server backend renders the served model's chat template itself, and this server does not publish it at /props: pass --chat-template with the model's GGUF, model folder, tokenizer_config.json or a Jinja file, or set format = \"completion\" with a `template`".into(),
            ));
        };
        let props = props.as_ref().expect("read above");
        let token = |key: &str| props[key].as_str().unwrap_or_default().to_string();
        let origin = PathBuf::from(format!("{}/props", self.client.url()));
        let template = ChatTemplate::new(
            source.to_string(),
            token("bos_token"),
            token("eos_token"),
            origin,
        )?;
        // /props does not say whether the server adds BOS by itself, so the rendering is sent
        // whole (some models' BOS text also opens every turn: SmolLM2's is <|im_start|>); give
        // --chat-template the model's file for a model that both adds BOS and writes it.
        Ok(ChatRenderer::new(template, None))
    }

    fn label_logprobs(&mut self, prefix: &str, suffixes: &[String]) -> Result<Vec<Vec<f32>>> {
        let method = self.method.ok_or_else(|| {
            self.client
                .error("the backend was not prepared for a classification task".into())
        })?;
        let tokens = AtomicU64::new(0);
        let outside = AtomicU64::new(0);
        let labels = &self.labels;
        let wide_first = AtomicBool::new(self.wide_first);
        let wide_requests = AtomicU64::new(0);
        let out: Vec<Vec<f32>> = match method {
            Method::TopLogprobs => self.in_flight(suffixes.len(), |i| {
                let text = format!("{prefix}{}", suffixes[i]);
                let mut k = if wide_first.load(Ordering::Relaxed) {
                    WIDE_TOP_K
                } else {
                    TOP_K
                };
                let top = loop {
                    let v = self.complete(top_request(&text, k))?;
                    tokens.fetch_add(usage(&v), Ordering::Relaxed);
                    if k == WIDE_TOP_K {
                        wide_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    let top = top_logprobs(&v).ok_or_else(|| {
                        self.client
                            .error("an answer had no top_logprobs (it had them at start-up)".into())
                    })?;
                    // A label below the top 20 is read from the wider top: the same value a
                    // wide first request gives, so the order of requests changes nothing.
                    if k < WIDE_TOP_K
                        && self.wide_allowed
                        && labels.iter().any(|l| !top.contains_key(l))
                    {
                        wide_first.store(true, Ordering::Relaxed);
                        k = WIDE_TOP_K;
                        continue;
                    }
                    break top;
                };
                // A label outside the top k is at most as likely as the least likely of them:
                // that bound keeps every label inside the top k ranked above it.
                let floor = top.values().copied().fold(f64::INFINITY, f64::min);
                Ok(labels
                    .iter()
                    .map(|l| {
                        top.get(l).copied().unwrap_or_else(|| {
                            outside.fetch_add(1, Ordering::Relaxed);
                            floor
                        }) as f32
                    })
                    .collect())
            })?,
            Method::Echo | Method::PromptLogprobs => {
                let k = labels.len();
                let flat = self.in_flight(suffixes.len() * k, |j| {
                    let (i, l) = (j / k, j % k);
                    let context = format!("{prefix}{}", suffixes[i]);
                    let full = format!("{context}{}", labels[l]);
                    let v = self.complete(request(method, &full))?;
                    tokens.fetch_add(usage(&v), Ordering::Relaxed);
                    let value = if method == Method::Echo {
                        echo_sum(&v, context.chars().count(), &full)
                    } else {
                        prompt_logprobs_sum(&v, self.label_tokens[l])
                    };
                    value.map(|x| x as f32).ok_or_else(|| {
                        self.client.error(format!(
                            "an answer had no {method} log-probs for {:?} (it had them at start-up)",
                            labels[l]
                        ))
                    })
                })?;
                flat.chunks(k).map(<[f32]>::to_vec).collect()
            }
        };
        self.texts += suffixes.len() as u64;
        self.tokens += tokens.into_inner();
        self.outside_top += outside.into_inner();
        self.wide_first = wide_first.into_inner();
        self.wide_requests += wide_requests.into_inner();
        Ok(out)
    }

    fn answers(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        spec: &GenerationSpec,
    ) -> Result<Vec<String>> {
        let tokens = AtomicU64::new(0);
        let generated = AtomicU64::new(0);
        let out = self.in_flight(suffixes.len(), |i| {
            let mut body = json!({
                "prompt": format!("{prefix}{}", suffixes[i]),
                "max_tokens": spec.max_new_tokens,
                "temperature": 0.0,
            });
            let stop: Vec<&String> = spec.stop.iter().filter(|s| !s.is_empty()).collect();
            if !stop.is_empty() {
                body["stop"] = json!(stop);
            }
            let v = self.complete(body)?;
            tokens.fetch_add(usage(&v), Ordering::Relaxed);
            generated.fetch_add(
                v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                Ordering::Relaxed,
            );
            let text = v["choices"][0]["text"].as_str().ok_or_else(|| {
                self.client
                    .error("a /completions answer had no choices[0].text".into())
            })?;
            Ok(cut_at_stop(text, &spec.stop))
        })?;
        self.texts += suffixes.len() as u64;
        self.tokens += tokens.into_inner();
        self.generated += generated.into_inner();
        Ok(out)
    }

    fn scoring_model(&self) -> Option<crate::task::metric::ScoringModel> {
        Some(crate::task::metric::ScoringModel::Server(
            self.client.clone(),
        ))
    }

    fn model_name(&self) -> String {
        self.client.model().to_string()
    }

    fn info(&self) -> BackendInfo {
        let mut notes = self.notes.clone();
        if self.client.server_count() > 1 {
            let each: Vec<String> = self
                .client
                .endpoint_stats()
                .iter()
                .map(|e| {
                    format!(
                        "{} answered {} and was set aside {} times",
                        e.url, e.answered, e.set_aside
                    )
                })
                .collect();
            notes.push(format!(
                "{} servers of the same model, each request sent to the one with the fewest in flight, a failed one set aside for {} s while the others carried on: {}",
                self.client.server_count(),
                crate::remote::SET_ASIDE.as_secs(),
                each.join("; ")
            ));
        }
        if let Some(path) = &self.chat_template {
            notes.push(format!(
                "chat tasks are rendered here with the chat template of {}",
                path.display()
            ));
        }
        if self.wide_requests > 0 {
            notes.push(format!(
                "{} requests read the top {WIDE_TOP_K} log-probs: a label was not among the top {TOP_K}",
                self.wide_requests
            ));
        }
        if self.outside_top > 0 {
            let k = if self.wide_allowed { WIDE_TOP_K } else { TOP_K };
            notes.push(format!(
                "{} label log-probs were outside the server's top {k} and took the smallest of them (an upper bound)",
                self.outside_top
            ));
        }
        BackendInfo {
            kind: "server".into(),
            model: self.model_name(),
            url: Some(self.client.url().to_string()),
            scoring_method: match self.method {
                Some(m) => format!("{m}: {}", self.reason),
                None => self.reason.clone(),
            },
            notes,
        }
    }

    fn forward_passes(&self) -> u64 {
        self.texts
    }

    fn tokens_processed(&self) -> u64 {
        self.tokens
    }

    fn tokens_generated(&self) -> u64 {
        self.generated
    }

    fn token_count(&self, text: &str) -> Option<usize> {
        ServerBackend::token_count(self, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "The capital of France is Paris";

    /// llama-cpp-python 0.3.36's answers for "The capital of France is Paris" (echo) and its
    /// next-token log-probs, as measured: the echo value of " Paris" is the shifted one.
    #[test]
    fn echo_sums_only_the_continuation_tokens() {
        let v = json!({"choices": [{"logprobs": {
            "text_offset": [0, 3, 11, 14, 21, 24],
            "token_logprobs": [null, -9.6, -10.46, -11.23, -11.79, -8.686],
            "tokens": ["The", " capital", " of", " France", " is", " Paris"],
        }}], "usage": {"prompt_tokens": 6, "completion_tokens": 1}});
        // The arrays list only the prompt's tokens although one was generated.
        assert_eq!(echo_sum(&v, 24, FULL), Some(-8.686));
        assert_eq!(echo_sum(&v, 14, FULL), Some(-11.79 + -8.686 + -11.23));
        // A null log-prob inside the continuation makes the value unknown, not zero.
        assert_eq!(echo_sum(&v, 0, FULL), None);
    }

    #[test]
    fn echo_offsets_shifted_by_a_decoded_bos_are_anchored_at_the_prompts_end() {
        // vLLM-style: "<s>" decoded before the prompt moves every offset by 3; the last token
        // is the generated one (usage says 1).
        let v = json!({"choices": [{"logprobs": {
            "text_offset": [0, 3, 6, 14, 17, 24, 27, 33],
            "token_logprobs": [null, null, -9.6, -10.46, -11.23, -11.79, -8.686, -1.0],
            "tokens": ["<s>", "The", " capital", " of", " France", " is", " Paris", "."],
            "top_logprobs": [null, null, null, null, null, {" Paris": -8.686}, {".": -1.0}, {}],
        }}], "usage": {"prompt_tokens": 7, "completion_tokens": 1}});
        assert_eq!(echo_sum(&v, 24, FULL), Some(-8.686));
        assert_eq!(echo_sum(&v, 14, FULL), Some(-11.79 + -8.686 + -11.23));
        let at_is = echo_top_at(&v, 24, FULL).unwrap();
        assert_eq!(at_is.get(" Paris"), Some(&-8.686));
        // Arrays of different lengths are not guessed at.
        let mut short = v.clone();
        short["choices"][0]["logprobs"]["text_offset"] = json!([0, 3]);
        assert_eq!(echo_sum(&short, 24, FULL), None);
    }

    #[test]
    fn prompt_logprobs_take_the_last_tokens() {
        let v = json!({"choices": [{"prompt_logprobs": [null,
            {"5": {"logprob": -1.5, "rank": 1, "decoded_token": " a"}},
            {"7": {"logprob": -0.25, "rank": 2, "decoded_token": " b"}}]}]});
        assert_eq!(prompt_logprobs_sum(&v, 1), Some(-0.25));
        assert_eq!(prompt_logprobs_sum(&v, 2), Some(-1.75));
        assert_eq!(prompt_logprobs_sum(&v, 4), None);
    }

    #[test]
    fn answers_are_cut_at_the_first_stop() {
        assert_eq!(cut_at_stop("hot\ncold.", &["\n".into(), ".".into()]), "hot");
        assert_eq!(cut_at_stop("hot", &[]), "hot");
    }
}
