//! Talking to an OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's server,
//! llama-cpp-python, Ollama): the blocking HTTP [`Client`] with timeouts, an API key read from
//! the environment, and retries with exponential backoff and jitter; [`chat`] is the
//! [`TextGenerator`](crate::chat::TextGenerator) over `/chat/completions`.

pub mod chat;
pub mod retry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use retry::Backoff;

/// Environment variables read for the server's API key, first set wins. The key is sent as a
/// bearer token and never written to a log, a run folder or an error.
pub(crate) const API_KEY_VARS: [&str; 2] = ["PROMPTEVO_API_KEY", "OPENAI_API_KEY"];

/// Seconds a request may take before it is abandoned (and retried): a long generation on a
/// large model behind a busy server takes tens of seconds, an answer never takes this long.
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// Attempts per request before the server is declared down (about 8 s of backoff in all).
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// How long a server that failed a request is set aside before it is tried again (while the
/// others carry on).
pub(crate) const SET_ASIDE: Duration = Duration::from_secs(10);

/// Whether a `--model` value names a server (its base URL, or several separated by commas)
/// rather than a model file.
pub fn is_server_url(model: &str) -> bool {
    let m = model.trim();
    m.starts_with("http://") || m.starts_with("https://")
}

/// The base URLs of a `--model` value naming one server or several (`URL1,URL2,...`), each
/// without a trailing `/`.
pub(crate) fn server_urls(model: &str) -> Vec<String> {
    model
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// How to reach a server, as the command line and `config.json` give it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`, or several
    /// servers of the same model separated by commas (requests are spread over them).
    pub url: String,
    /// The served model's name (None: the first model `/models` lists).
    #[serde(default)]
    pub model: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds before one request is abandoned.
    pub timeout_s: f64,
    /// Attempts per request (1 = no retry).
    pub attempts: u32,
    /// Where the served model's chat template is read for chat tasks (its GGUF, model folder,
    /// tokenizer_config.json or a Jinja file); None: the server's `/props` (llama.cpp's
    /// llama-server gives it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<std::path::PathBuf>,
}

impl ServerConfig {
    /// A configuration for `url` with the default timeout and attempts.
    pub fn new(url: &str) -> Self {
        Self {
            url: server_urls(url).join(","),
            model: None,
            concurrency: 1,
            timeout_s: DEFAULT_TIMEOUT_S,
            attempts: DEFAULT_ATTEMPTS,
            chat_template: None,
        }
    }
}

/// One server of a [`Client`]: its base URL, requests now in flight, and until when it is set
/// aside after a failure.
#[derive(Debug)]
struct Endpoint {
    base: String,
    in_flight: AtomicUsize,
    aside_until: Mutex<Option<Instant>>,
    answered: AtomicU64,
    set_aside: AtomicU64,
}

impl Endpoint {
    fn new(base: String) -> Self {
        Self {
            base,
            in_flight: AtomicUsize::new(0),
            aside_until: Mutex::new(None),
            answered: AtomicU64::new(0),
            set_aside: AtomicU64::new(0),
        }
    }

    /// Whether it may be sent a request now.
    fn available(&self, now: Instant) -> bool {
        self.aside_until
            .lock()
            .map_or(true, |until| until.is_none_or(|t| t <= now))
    }

    fn put_aside(&self) {
        if let Ok(mut until) = self.aside_until.lock() {
            *until = Some(Instant::now() + SET_ASIDE);
        }
        self.set_aside.fetch_add(1, Ordering::Relaxed);
    }

    fn take_back(&self) {
        if let Ok(mut until) = self.aside_until.lock() {
            *until = None;
        }
    }
}

/// How one server of a [`Client`] has fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointStats {
    /// Its base URL.
    pub url: String,
    /// Requests it answered.
    pub answered: u64,
    /// Times it was set aside after a failed request.
    pub set_aside: u64,
}

/// A blocking client for one served model on one server or several (the same model on each):
/// every request goes to the server with the fewest requests in flight; a server that fails is
/// set aside for [`SET_ASIDE`] while the others carry on, then tried again. Cheap to share
/// between threads.
#[derive(Clone)]
pub struct Client {
    base: String,
    endpoints: Arc<Vec<Endpoint>>,
    agent: ureq::Agent,
    key: Option<String>,
    model: String,
    backoff: Backoff,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server: checks it answers and resolves the served model (the one named,
    /// else the first `/models` lists). An error names the URL and the fix.
    pub fn connect(config: &ServerConfig) -> Result<Self> {
        let urls = server_urls(&config.url);
        if let Some(bad) = urls
            .iter()
            .find(|u| !is_server_url(u))
            .or(urls.is_empty().then_some(&config.url))
        {
            return Err(Error::Usage(format!(
                "`{bad}` is not a server URL; give one like http://127.0.0.1:8000/v1 (or several of the same model separated by commas)"
            )));
        }
        let mut unique = urls.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != urls.len() {
            return Err(Error::Usage(format!(
                "`{}` names a server twice; give each server once",
                config.url
            )));
        }
        if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
            return Err(Error::Usage(
                "--server-timeout must be a positive number of seconds".into(),
            ));
        }
        let timeout = Duration::from_secs_f64(config.timeout_s);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .max_idle_connections_per_host(config.concurrency.max(1) * 2)
            .build();
        let key = API_KEY_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|k| !k.trim().is_empty()));
        let mut client = Self {
            base: urls.join(","),
            endpoints: Arc::new(urls.iter().cloned().map(Endpoint::new).collect()),
            agent,
            key,
            model: config.model.clone().unwrap_or_default(),
            backoff: Backoff::new(config.attempts.max(1)),
        };
        // Every server must serve the model; one that does not answer now is set aside (it
        // is tried again later), unless none answers.
        let mut lists = Vec::new();
        let mut first_error = None;
        for (i, endpoint) in client.endpoints.iter().enumerate() {
            match client.get_from(i, "models") {
                Ok(models) => lists.push((endpoint.base.clone(), served_models(&models))),
                Err(e) => {
                    endpoint.put_aside();
                    first_error.get_or_insert(e);
                }
            }
        }
        let Some((_, served)) = lists.first().cloned() else {
            return Err(first_error.expect("no server answered"));
        };
        match &config.model {
            Some(name) if !served.is_empty() && !served.contains(name) => {
                return Err(client.error(format!(
                    "serves {} but not `{name}`; pass one of them to --server-model",
                    served.join(", ")
                )))
            }
            Some(_) => {}
            None => {
                client.model = served.first().cloned().ok_or_else(|| {
                    client.error(
                        "lists no model at /models; pass the served model's name with --server-model"
                            .to_string(),
                    )
                })?;
            }
        }
        if let Some((url, other)) = lists
            .iter()
            .find(|(_, list)| !list.is_empty() && !list.contains(&client.model))
        {
            return Err(Error::Server {
                url: url.clone(),
                message: format!(
                    "serves {} but not `{}`, which {} serves: every server of one run must serve the same model",
                    other.join(", "),
                    client.model,
                    lists[0].0
                ),
            });
        }
        Ok(client)
    }

    /// The base URL (several, comma-separated, for a client over several servers).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// How many servers the client spreads its requests over.
    pub(crate) fn server_count(&self) -> usize {
        self.endpoints.len()
    }

    /// How each server has fared so far, in the order given.
    pub(crate) fn endpoint_stats(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|e| EndpointStats {
                url: e.base.clone(),
                answered: e.answered.load(Ordering::Relaxed),
                set_aside: e.set_aside.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The served model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// An error about this server.
    pub fn error(&self, message: String) -> Error {
        Error::Server {
            url: self.base.clone(),
            message,
        }
    }

    /// GET `path` (relative to the base URL) as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(None, path, |agent, url| {
            self.authorised(agent.get(url)).call().map_err(Box::new)
        })
    }

    /// GET `path` from the `i`-th server only.
    fn get_from(&self, i: usize, path: &str) -> Result<Value> {
        self.send(Some(i), path, |agent, url| {
            self.authorised(agent.get(url)).call().map_err(Box::new)
        })
    }

    /// POST `body` to `path` (relative to the base URL) and read the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(None, path, |agent, url| {
            self.authorised(agent.post(url))
                .send_json(body.clone())
                .map_err(Box::new)
        })
    }

    /// `path` at the root (the base URL without a trailing `/v1`) of the server optional
    /// endpoints are asked: the first not set aside.
    fn optional_url(&self, path: &str) -> String {
        let now = Instant::now();
        let base = &self
            .endpoints
            .iter()
            .find(|e| e.available(now))
            .unwrap_or(&self.endpoints[0])
            .base;
        let root = base.strip_suffix("/v1").unwrap_or(base);
        format!("{root}/{path}")
    }

    /// The order in which servers are tried for one request: those not set aside, fewest
    /// requests in flight first (ties: the order given), then those set aside.
    fn try_order(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut order: Vec<(bool, usize, usize)> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (!e.available(now), e.in_flight.load(Ordering::Relaxed), i))
            .collect();
        order.sort();
        order.into_iter().map(|(_, _, i)| i).collect()
    }

    /// POST `body` to `path` relative to the server's root (the base URL without a trailing
    /// `/v1`), without retries: for optional endpoints such as `/tokenize`. None when the
    /// server does not have it (any error status).
    pub(crate) fn post_optional(&self, path: &str, body: &Value) -> Option<Value> {
        let url = self.optional_url(path);
        let response = self
            .authorised(self.agent.post(&url))
            .send_json(body.clone());
        response.ok()?.into_json().ok()
    }

    /// GET `path` relative to the server's root (the base URL without a trailing `/v1`),
    /// without retries: for optional endpoints such as llama-server's `/props`. None when the
    /// server does not have it.
    pub(crate) fn get_optional(&self, path: &str) -> Option<Value> {
        let url = self.optional_url(path);
        let response = self.authorised(self.agent.get(&url)).call();
        response.ok()?.into_json().ok()
    }

    fn authorised(&self, request: ureq::Request) -> ureq::Request {
        match &self.key {
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
            None => request,
        }
    }

    /// Sends with retries on 429, 5xx and transport errors; other statuses fail at once with
    /// the server's message.
    /// Sends one request (to server `only`, or to each server in [`Self::try_order`] until one
    /// answers: a server whose failure is worth retrying is set aside and the next is tried at
    /// once), with retries and backoff once every server has failed; other failures stop at
    /// once. The error names the server that failed last.
    fn send(
        &self,
        only: Option<usize>,
        path: &str,
        request: impl Fn(&ureq::Agent, &str) -> std::result::Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<Value> {
        let url_of = |i: usize| format!("{}/{path}", self.endpoints[i].base);
        let last_url = Mutex::new(url_of(only.unwrap_or(0)));
        let outcome = self.backoff.run(|| {
            let order = match only {
                Some(i) => vec![i],
                None => self.try_order(),
            };
            let mut last = None;
            for i in order {
                let endpoint = &self.endpoints[i];
                let url = url_of(i);
                if let Ok(mut last) = last_url.lock() {
                    last.clone_from(&url);
                }
                endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
                let attempt = self.attempt(&request, &url);
                endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
                match attempt {
                    retry::Attempt::Retry(message, wait) => {
                        if self.endpoints.len() > 1 {
                            endpoint.put_aside();
                        }
                        last = Some(retry::Attempt::Retry(message, wait));
                    }
                    done_or_failed => {
                        endpoint.answered.fetch_add(1, Ordering::Relaxed);
                        endpoint.take_back();
                        return done_or_failed;
                    }
                }
            }
            last.expect("at least one server was tried")
        });
        let url = last_url.into_inner().unwrap_or_default();
        self.failure(outcome, &url)
    }

    /// One attempt at one server.
    fn attempt(
        &self,
        request: &impl Fn(&ureq::Agent, &str) -> std::result::Result<ureq::Response, Box<ureq::Error>>,
        url: &str,
    ) -> retry::Attempt<Value> {
        match request(&self.agent, url).map_err(|e| *e) {
            Ok(response) => match response.into_json::<Value>() {
                Ok(v) => retry::Attempt::Done(v),
                // A body cut off mid-way (the server died while answering) is worth retrying.
                Err(e) => retry::Attempt::Retry(format!("unreadable answer ({e})"), None),
            },
            Err(ureq::Error::Status(code, response)) => {
                let wait = response
                    .header("Retry-After")
                    .and_then(|s| s.trim().parse::<f64>().ok());
                let body = response.into_string().unwrap_or_default();
                let detail = server_message(&body);
                if code == 429 || (500..=599).contains(&code) {
                    retry::Attempt::Retry(format!("HTTP {code} {detail}"), wait)
                } else {
                    retry::Attempt::Fail(format!("HTTP {code} {detail}"))
                }
            }
            Err(ureq::Error::Transport(t)) => match t.kind() {
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                    retry::Attempt::Fail(format!("{t}"))
                }
                _ => retry::Attempt::Retry(transport_message(&t), None),
            },
        }
    }

    /// The request's value, or its failure as one error naming `url` and the fix.
    fn failure(
        &self,
        outcome: std::result::Result<Value, retry::Failure>,
        url: &str,
    ) -> Result<Value> {
        outcome.map_err(|failure| {
            let hint = if failure.attempts > 1 {
                format!(
                    "; no answer after {} attempts: check that the server is running and reachable (a run stopped this way continues with `promptevo resume RUN_DIR` once it is back)",
                    failure.attempts
                )
            } else if failure.message.starts_with("HTTP 401") || failure.message.starts_with("HTTP 403") {
                format!("; set the API key in ${} (or ${})", API_KEY_VARS[0], API_KEY_VARS[1])
            } else if failure.message.starts_with("HTTP 404") {
                "; check the URL (an OpenAI-compatible base URL usually ends with /v1)".to_string()
            } else {
                String::new()
            };
            Error::Server {
                url: url.to_string(),
                message: format!("{}{hint}", failure.message),
            }
        })
    }
}

/// The model names a `/models` answer lists.
fn served_models(models: &Value) -> Vec<String> {
    models["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The one-line gist of an error body: OpenAI-style `{"error": {"message": ...}}`, FastAPI's
/// `{"detail": ...}`, else the start of the text.
fn server_message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = v["error"]["message"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .or_else(|| v["message"].as_str())
        .map(str::to_string)
        .or_else(|| (!v["detail"].is_null()).then(|| v["detail"].to_string()))
        .unwrap_or_else(|| body.to_string());
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(300).collect()
}

/// A transport error in one line (ureq's own message may span several).
fn transport_message(t: &ureq::Transport) -> String {
    let kind = match t.kind() {
        ureq::ErrorKind::ConnectionFailed => "connection refused or failed",
        ureq::ErrorKind::Dns => "host name not found",
        ureq::ErrorKind::TooManyRedirects => "too many redirects",
        ureq::ErrorKind::Io => "connection lost or timed out",
        _ => "transport error",
    };
    let detail = t
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{kind} ({detail})")
}
