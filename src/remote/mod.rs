//! Talking to an OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's server,
//! llama-cpp-python, Ollama): the blocking HTTP [`Client`] with timeouts, an API key read from
//! the environment, and retries with exponential backoff and jitter; [`chat`] is the
//! [`TextGenerator`](crate::evolve::TextGenerator) over `/chat/completions`.

pub mod chat;
pub mod retry;

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use retry::Backoff;

/// Environment variables read for the server's API key, first set wins. The key is sent as a
/// bearer token and never written to a log, a run folder or an error.
pub const API_KEY_VARS: [&str; 2] = ["PROMPTEVO_API_KEY", "OPENAI_API_KEY"];

/// Seconds a request may take before it is abandoned (and retried): a long generation on a
/// large model behind a busy server takes tens of seconds, an answer never takes this long.
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// Attempts per request before the server is declared down (about 8 s of backoff in all).
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// Whether a `--model` value names a server (its base URL) rather than a model file.
pub fn is_server_url(model: &str) -> bool {
    let m = model.trim();
    m.starts_with("http://") || m.starts_with("https://")
}

/// How to reach a server, as the command line and `config.json` give it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`.
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
            url: url.trim().trim_end_matches('/').to_string(),
            model: None,
            concurrency: 1,
            timeout_s: DEFAULT_TIMEOUT_S,
            attempts: DEFAULT_ATTEMPTS,
            chat_template: None,
        }
    }
}

/// A blocking client for one server and one served model; cheap to share between threads.
#[derive(Clone)]
pub struct Client {
    base: String,
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
        if !is_server_url(&config.url) {
            return Err(Error::Usage(format!(
                "`{}` is not a server URL; give one like http://127.0.0.1:8000/v1",
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
            base: config.url.trim().trim_end_matches('/').to_string(),
            agent,
            key,
            model: config.model.clone().unwrap_or_default(),
            backoff: Backoff::new(config.attempts.max(1)),
        };
        let models = client.get("models")?;
        let served: Vec<String> = models["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
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
        Ok(client)
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
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
        let url = format!("{}/{path}", self.base);
        self.send(&url, |agent| {
            self.authorised(agent.get(&url)).call().map_err(Box::new)
        })
    }

    /// POST `body` to `path` (relative to the base URL) and read the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/{path}", self.base);
        self.send(&url, |agent| {
            self.authorised(agent.post(&url))
                .send_json(body.clone())
                .map_err(Box::new)
        })
    }

    /// POST `body` to `path` relative to the server's root (the base URL without a trailing
    /// `/v1`), without retries: for optional endpoints such as `/tokenize`. None when the
    /// server does not have it (any error status).
    pub fn post_optional(&self, path: &str, body: &Value) -> Option<Value> {
        let root = self.base.strip_suffix("/v1").unwrap_or(&self.base);
        let url = format!("{root}/{path}");
        let response = self
            .authorised(self.agent.post(&url))
            .send_json(body.clone());
        response.ok()?.into_json().ok()
    }

    /// GET `path` relative to the server's root (the base URL without a trailing `/v1`),
    /// without retries: for optional endpoints such as llama-server's `/props`. None when the
    /// server does not have it.
    pub fn get_optional(&self, path: &str) -> Option<Value> {
        let root = self.base.strip_suffix("/v1").unwrap_or(&self.base);
        let url = format!("{root}/{path}");
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
    fn send(
        &self,
        url: &str,
        request: impl Fn(&ureq::Agent) -> std::result::Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<Value> {
        let outcome = self
            .backoff
            .run(|| match request(&self.agent).map_err(|e| *e) {
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
            });
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
