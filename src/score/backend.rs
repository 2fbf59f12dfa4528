//! The seam between the [`Scorer`](super::Scorer) and whatever runs the model: label
//! log-likelihoods for a batch of texts that share a prefix, and greedy answers for generation
//! tasks. The in-process candle engine ([`super::local`]) and an OpenAI-compatible inference
//! server ([`super::server`]) are two implementations; the cache, calibration, budget and logs
//! stay in the scorer and above it, so every backend is accounted the same way.
//!
//! The shape follows lm-evaluation-harness's `LM` interface (`loglikelihood(context,
//! continuation)` and `generate_until`, batched).

use crate::error::Result;
use crate::task::format::ChatRenderer;
use crate::task::metric::ScoringModel;
use crate::task::{GenerationSpec, Task};

/// What a backend says about itself for the run's log and report.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackendInfo {
    /// `in-process` or `server`.
    pub kind: String,
    /// The model's name (the GGUF's, or the served model's id).
    pub model: String,
    /// The server's base URL (None in process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How label log-probs are obtained (e.g. `forward` in process, `echo` or `top_logprobs`
    /// through a server), with the reason for the choice.
    pub scoring_method: String,
    /// What could not be verified or made reproducible (one sentence each).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl BackendInfo {
    /// The scoring method's name, without its reason: `forward` in process; `echo`,
    /// `prompt_logprobs` or `top_logprobs` through a server (for generation tasks, the text
    /// before the reason).
    pub fn method(&self) -> &str {
        self.scoring_method
            .split_once(':')
            .map_or(self.scoring_method.as_str(), |(name, _)| name)
            .trim()
    }
}

/// Runs the model for a [`Scorer`](super::Scorer).
///
/// Results must not depend on how the texts were batched or on thread timing: the scorer caches
/// them per (prompt, example) and a resumed run replays them.
pub trait ScoringBackend {
    /// Called once per task before any scoring: tokenises the task's labels (in process) or
    /// probes how the server can score them. An error names the label or server and the fix.
    fn prepare(&mut self, task: &Task) -> Result<()>;

    /// The renderer of chat tasks (`format = "chat"`): the scoring model's own chat template.
    /// Asked once per chat task, before [`ScoringBackend::prepare`]; an error (one line naming
    /// the model and `format = "completion"`) when the backend cannot render chats.
    fn chat_renderer(&self) -> Result<ChatRenderer>;

    /// For each text `prefix + suffixes[i]`, the log-probability of each of the task's
    /// verbalisers as its continuation (summed over the verbaliser's tokens), in label order.
    fn label_logprobs(&mut self, prefix: &str, suffixes: &[String]) -> Result<Vec<Vec<f32>>>;

    /// For each text `prefix + suffixes[i]`, the greedy answer (up to `spec.max_new_tokens`,
    /// cut before the first stop string).
    fn answers(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        spec: &GenerationSpec,
    ) -> Result<Vec<String>>;

    /// The model it runs, for a metric that judges with the scoring model (None: it cannot be
    /// named).
    fn scoring_model(&self) -> Option<ScoringModel> {
        None
    }

    /// The model's name, for reports.
    fn model_name(&self) -> String;

    /// How it scores, for the run folder and report.
    fn info(&self) -> BackendInfo;

    /// Texts run through the model so far (one per text scored or answered).
    fn forward_passes(&self) -> u64;

    /// Tokens run through the model so far (prompt and generated tokens; 0 when unknown).
    fn tokens_processed(&self) -> u64;

    /// Tokens generated so far (generation tasks).
    fn tokens_generated(&self) -> u64;

    /// Tokens of `text` in the model's tokenizer (no BOS; for prompt-length reports and the
    /// length penalty). None when the backend cannot tell.
    fn token_count(&self, _text: &str) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_name_is_the_scoring_method_without_its_reason() {
        let info = |scoring_method: &str| BackendInfo {
            scoring_method: scoring_method.into(),
            ..BackendInfo::default()
        };
        assert_eq!(
            info("top_logprobs: its echo log-probs are shifted (self-check on \"a: b\")").method(),
            "top_logprobs"
        );
        assert_eq!(
            info("generation task: greedy /completions").method(),
            "generation task"
        );
        assert_eq!(info("forward").method(), "forward");
    }
}
