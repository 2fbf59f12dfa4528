//! Chat turns and the [`TextGenerator`] trait: the one seam through which anything (model-driven
//! operators, a judge metric, chat tasks) asks a language model for text.
//!
//! A leaf below `evolve`, `model`, `remote`, `score` and `task`: it depends only on the library's
//! error type, so the model and the server client implement it without knowing the search. The
//! search never touches the model directly: operators that need wording get a [`TextGenerator`]
//! (implemented over the local model's chat template and sampler in `model::generate`, or over a
//! server's `/chat/completions` in `remote::chat`), and never see scores or data splits other
//! than train demonstrations.

use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A system turn.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Writes a reply to a chat, sampling with the seeded stream it is handed (same seed, same text).
pub trait TextGenerator {
    /// The model's reply to `messages` (the raw text after the chat template's assistant header,
    /// up to the end-of-turn token or the length limit), sampled with `rng`.
    fn chat(&mut self, messages: &[ChatMessage], rng: &mut ChaCha8Rng) -> Result<String>;
    /// Tokens generated so far (for reports).
    fn tokens_generated(&self) -> u64 {
        0
    }
    /// What the report should say about this generator's reproducibility (None: replies are a
    /// function of the messages and the stream).
    fn reproducibility_note(&self) -> Option<String> {
        None
    }
}
