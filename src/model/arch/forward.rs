//! What the scorer and the generator call on a loaded model: [`Architecture`] (a new KV cache, a
//! forward pass over padded rows with explicit positions and masks, log-probabilities at the
//! rows asked for), and, where a model has it, [`PackedForward`] (rows of different lengths
//! packed back to back without padding), asked for through [`Architecture::packed`].

use candle_core::{Device, Tensor};

use super::spec::ModelConfig;
use crate::error::Result;
use crate::model::kv_cache::KvCache;

/// One row of a packed batch ([`PackedForward`]): its token count and its mask.
pub struct PackedRow<'a> {
    /// Its tokens.
    pub len: usize,
    /// `len × (prefix + len)` additive mask (0 or -inf) over the prefix and the row's tokens.
    pub mask: &'a [f32],
}

/// A transformer ready for forward passes: what the scoring engine and the generator need.
pub trait Architecture: Send + Sync {
    /// The model's hyper-parameters.
    fn config(&self) -> &ModelConfig;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// An empty KV cache for this model.
    fn new_cache(&self) -> KvCache;

    /// Longest sequence (cache + new tokens) the position tables cover.
    fn max_positions(&self) -> usize;

    /// Runs `tokens` (`(batch, seq)` u32) after what `cache` holds and returns the final-normed
    /// hidden states `(batch, seq, hidden)`. `positions` (`(batch, seq)` u32) are the new tokens'
    /// positions; `mask` (`(batch, 1, seq, cache.len() + seq)` f32) is added to the attention
    /// scores (0 where a query may see a key, `-inf` where not). The cache is extended in place.
    fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor>;

    /// The packed forward passes, where this model has them (the native CPU bf16 path); None
    /// where it runs padded batches only.
    fn packed(&self) -> Option<&dyn PackedForward> {
        None
    }

    /// Log-probabilities over the vocabulary (`(n, vocab)`, f32) for hidden states `(n, hidden)`.
    fn log_probs(&self, hidden: &Tensor) -> Result<Tensor>;

    /// Log-probabilities of the next token after every prefix of `ids` (`ids.len() × vocab`),
    /// from one plain causal pass with a fresh cache: the reference the batched engine must
    /// agree with.
    fn causal_log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let device = self.device();
        let s = ids.len();
        let tokens = Tensor::new(ids, device)?.unsqueeze(0)?;
        let positions: Vec<u32> = (0..s as u32).collect();
        let positions = Tensor::new(positions.as_slice(), device)?.unsqueeze(0)?;
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, s, s), device)?;
        let hidden = self
            .forward(&tokens, &positions, &mask, &mut self.new_cache())?
            .squeeze(0)?;
        Ok(self.log_probs(&hidden)?.to_vec2()?)
    }
}

/// Forward passes over rows of different lengths packed back to back (no padding), each row
/// after a shared one-row prefix cache: what a model offers through [`Architecture::packed`].
/// Every token gets exactly the result [`Architecture::forward`] gives it in a padded batch.
pub trait PackedForward: Send + Sync {
    /// Runs the packed rows after the shared one-row `prefix` cache, which is left as is;
    /// returns the final-normed hidden states of the packed tokens `keep` (ascending indices
    /// into `tokens`; `keep.len() × hidden`).
    fn forward_packed(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        keep: &[usize],
    ) -> Result<Vec<f32>>;

    /// Runs the packed rows after the shared one-row `prefix` cache (left as is) and each row's
    /// own one-row cache `tails[r]` (its tokens after the prefix so far), which is extended in
    /// place; row `r`'s mask is `len × (prefix + tails[r] + len)`. Returns the final-normed
    /// hidden states of the packed tokens `keep` (ascending), each exactly what
    /// [`Architecture::forward`] gives it with the prefix and tail as one batch-1 cache: many
    /// greedy decodings advance in one pass.
    fn forward_ragged(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        tails: &mut [KvCache],
        keep: &[usize],
    ) -> Result<Vec<f32>>;
}
