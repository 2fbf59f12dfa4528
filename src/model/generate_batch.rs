//! Greedy decoding of many continuations at once after one shared prompt prefix: the prefix's
//! KV cache is computed once by the caller, the rows' own tokens are prefilled together in one
//! packed forward pass, then every live row advances by one token per pass; a row that stops
//! (end of turn, a stop string, its token budget, the context) leaves the batch and a waiting
//! row takes its place, prefilled in the same pass as the others' next token.
//!
//! Each row's result is token for token the one [`Generator::generate_after`] gives it alone:
//! the native CPU forward computes every token from its own row only, in a fixed order (see
//! [`crate::model::PackedForward::forward_ragged`]), and the picks are the same argmax of the
//! same log-probabilities.

use candle_core::Tensor;

use super::arch::{PackedForward, PackedRow};
use super::generate::{argmax, first_stop, GenerateOptions, Generation, Generator, StopReason};
use super::kv_cache::KvCache;
use crate::error::{Error, Result};

/// Rows decoded side by side when the caller does not say (a pass over 64 one-token rows reads
/// the weights once for all of them).
pub const DEFAULT_ROWS: usize = 64;

/// One continuation being decoded.
struct Live {
    /// Index in the caller's list.
    index: usize,
    /// Tokens to run in the next pass (the row's own prompt tokens first, then one at a time).
    pending: Vec<u32>,
    /// Its keys and values after the shared prefix.
    tail: KvCache,
    /// Tokens generated so far.
    generated: Vec<u32>,
    /// The text of `generated` (before any stop string).
    text: String,
    /// Its prompt tokens (after the prefix).
    prompt_tokens: usize,
}

impl Generator<'_> {
    /// Whether [`Generator::generate_batch`] runs on this model (one with packed forward passes:
    /// the native CPU bf16 path).
    pub fn batches(&self) -> bool {
        self.model().arch.packed().is_some()
    }

    /// Greedy continuations of `prefix` + `suffixes[i]` for every `i`, at most `rows` decoded
    /// side by side; `prefix` is a one-row cache (or empty) that is left as is. Each result is
    /// the one [`Generator::generate_after`] gives on a clone of `prefix` with `suffixes[i]`
    /// (same tokens, text and stop reason). Greedy only (`options.temperature` must be 0), and
    /// only where [`Generator::batches`].
    pub fn generate_batch(
        &mut self,
        prefix: &KvCache,
        suffixes: &[Vec<u32>],
        options: &GenerateOptions,
        rows: usize,
    ) -> Result<Vec<Generation>> {
        if options.temperature != 0.0 {
            return Err(Error::Internal(
                "batched generation is greedy only (temperature 0)".into(),
            ));
        }
        let model = self.model();
        let Some(packed) = model.arch.packed() else {
            return Err(Error::Internal(
                "batched generation needs --weights bf16 on the CPU".into(),
            ));
        };
        let max_pos = model.arch.max_positions();
        let p = prefix.len();
        for ids in suffixes {
            if ids.is_empty() {
                return Err(if p == 0 {
                    Error::Usage("nothing to continue: the prompt encodes to no tokens".into())
                } else {
                    Error::Internal(
                        "nothing to continue: give at least one token after the cache".into(),
                    )
                });
            }
            if p + ids.len() > max_pos {
                return Err(Error::Usage(format!(
                    "the prompt has {} tokens, more than the model's {max_pos} positions; shorten it",
                    p + ids.len()
                )));
            }
        }
        let mut out: Vec<Option<Generation>> = vec![None; suffixes.len()];
        let mut waiting = suffixes.iter().enumerate();
        let mut live: Vec<Live> = Vec::new();
        let rows = rows.max(1);
        loop {
            while live.len() < rows {
                let Some((index, ids)) = waiting.next() else {
                    break;
                };
                self.tokens_prefilled += ids.len() as u64;
                if options.max_new_tokens == 0 {
                    out[index] = Some(Generation {
                        text: String::new(),
                        prompt_tokens: ids.len(),
                        new_tokens: 0,
                        stop_reason: StopReason::Length,
                    });
                    continue;
                }
                live.push(Live {
                    index,
                    pending: ids.clone(),
                    tail: model.arch.new_cache(),
                    generated: Vec::new(),
                    text: String::new(),
                    prompt_tokens: ids.len(),
                });
            }
            if live.is_empty() {
                break;
            }
            let logp = self.step_rows(packed, prefix, &mut live)?;
            // Each row picks its next token and either continues or leaves the batch.
            let mut still = Vec::with_capacity(live.len());
            for (mut row, lp) in live.into_iter().zip(logp) {
                let next = argmax(&lp);
                row.generated.push(next);
                self.tokens_generated += 1;
                // The same checks, in the same order, as `generate_after`.
                let mut reason = None;
                if self.stop_ids().contains(&next) {
                    reason = Some(StopReason::EndOfText);
                } else {
                    row.text = model.decode(&row.generated)?;
                    if let Some(at) = first_stop(&row.text, &options.stop) {
                        row.text.truncate(at);
                        reason = Some(StopReason::StopString);
                    } else if row.generated.len() >= options.max_new_tokens {
                        reason = Some(StopReason::Length);
                    } else if p + row.tail.len() + 1 > max_pos {
                        reason = Some(StopReason::Context);
                    }
                }
                match reason {
                    Some(stop_reason) => {
                        out[row.index] = Some(Generation {
                            text: row.text,
                            prompt_tokens: row.prompt_tokens,
                            new_tokens: row.generated.len(),
                            stop_reason,
                        });
                    }
                    None => {
                        row.pending = vec![next];
                        still.push(row);
                    }
                }
            }
            live = still;
        }
        out.into_iter()
            .map(|g| g.ok_or_else(|| Error::Internal("a batched generation was lost".into())))
            .collect()
    }

    /// One ragged pass of the model's `packed` passes over every live row's pending tokens
    /// after `prefix` and its own tail; returns, per row, the next-token log-probs after its
    /// last pending token.
    fn step_rows(
        &self,
        packed: &dyn PackedForward,
        prefix: &KvCache,
        live: &mut [Live],
    ) -> Result<Vec<Vec<f32>>> {
        let arch = &self.model().arch;
        let p = prefix.len();
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        let mut masks = Vec::with_capacity(live.len());
        let mut keep = Vec::with_capacity(live.len());
        for row in live.iter() {
            let (t, n) = (row.tail.len(), row.pending.len());
            let kv = p + t + n;
            tokens.extend_from_slice(&row.pending);
            // As `generate_after` numbers them: by the cache's length.
            positions.extend((0..n).map(|i| (p + t + i) as u32));
            let mut mask = vec![0f32; n * kv];
            for (i, mrow) in mask.chunks_exact_mut(kv).enumerate() {
                mrow[p + t + i + 1..].fill(f32::NEG_INFINITY);
            }
            masks.push(mask);
            keep.push(tokens.len() - 1);
        }
        let rows: Vec<PackedRow> = live
            .iter()
            .zip(&masks)
            .map(|(row, mask)| PackedRow {
                len: row.pending.len(),
                mask,
            })
            .collect();
        let mut tails: Vec<KvCache> = live
            .iter_mut()
            .map(|r| std::mem::replace(&mut r.tail, KvCache::new(0)))
            .collect();
        let hidden = packed.forward_ragged(&tokens, &positions, &rows, prefix, &mut tails, &keep);
        for (row, tail) in live.iter_mut().zip(tails) {
            row.tail = tail;
        }
        let hidden = Tensor::from_vec(hidden?, (keep.len(), arch.config().hidden), arch.device())?;
        Ok(arch.log_probs(&hidden)?.to_vec2()?)
    }
}
