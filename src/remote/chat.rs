//! The [`TextGenerator`] model-driven operators use when the mutator is a server: one
//! `/chat/completions` request per reply (the server applies the model's chat template), with
//! the run's temperature, top-p and length limit, and a `seed` drawn from the run's stream.
//!
//! Reproducible only as far as the server is: a server that ignores `seed`, or batches
//! concurrent requests non-deterministically, can answer the same request differently.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::Client;
use crate::chat::{ChatMessage, TextGenerator};
use crate::error::{Error, Result};
use crate::model::GenerateOptions;

/// Writes replies through a server's chat endpoint.
pub(crate) struct ServerChat {
    client: Client,
    options: GenerateOptions,
    tokens_generated: u64,
}

impl ServerChat {
    /// A generator over `client` decoding with `options` (`stop` strings are sent as given).
    pub fn new(client: Client, options: GenerateOptions) -> Self {
        Self {
            client,
            options,
            tokens_generated: 0,
        }
    }

    /// What the report should say about reproducibility.
    pub fn note(&self) -> String {
        format!(
            "model-driven operators write through {} ({}) with a per-request seed from the run's stream; the text is reproducible only if the server honours `seed` and decodes deterministically (one request in flight: operators ask one at a time)",
            self.client.url(),
            self.client.model()
        )
    }
}

impl TextGenerator for ServerChat {
    fn chat(&mut self, messages: &[ChatMessage], rng: &mut ChaCha8Rng) -> Result<String> {
        // 32 bits: llama.cpp's seed is a u32, vLLM's and SGLang's an integer.
        let seed = u64::from(rng.next_u32());
        let mut body = json!({
            "model": self.client.model(),
            "messages": messages,
            "temperature": self.options.temperature,
            "top_p": self.options.top_p,
            "max_tokens": self.options.max_new_tokens,
            "seed": seed,
        });
        if !self.options.stop.is_empty() {
            body["stop"] = json!(self.options.stop);
        }
        let answer = self.client.post("chat/completions", &body)?;
        self.tokens_generated += answer["usage"]["completion_tokens"].as_u64().unwrap_or(0);
        answer["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                Error::BadReply(format!(
                    "{}/chat/completions answered without choices[0].message.content; is it an OpenAI-compatible server?",
                    self.client.url()
                ))
            })
    }

    fn tokens_generated(&self) -> u64 {
        self.tokens_generated
    }

    fn reproducibility_note(&self) -> Option<String> {
        Some(self.note())
    }
}
