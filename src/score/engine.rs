//! The scoring engine: log P(continuation | text) for many texts that share a prefix, with the
//! prefix computed once, texts batched with right padding, and every continuation of a text
//! scored from that text's single forward pass (continuations are branches of one sequence,
//! each attending to the text and to itself only).

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::model::{KvCache, Model, PackedForward, PackedRow};

/// Options of the engine.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct EngineOptions {
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Compute the shared prefix once and reuse its KV cache.
    pub prefix_reuse: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            batch_size: 8,
            prefix_reuse: true,
        }
    }
}

/// One text to score: token ids after the shared prefix, and whether the shared prefix applies.
struct Row {
    /// Index of the text in the caller's list.
    index: usize,
    /// Tokens after the prefix (the whole text when `with_prefix` is false).
    tokens: Vec<u32>,
    /// Branch of each token: 0 = the text, k + 1 = continuation k.
    branch: Vec<usize>,
    /// RoPE position of each token, relative to the end of the prefix.
    position: Vec<usize>,
    /// For continuation k, token j: (row index whose output predicts it, token id).
    targets: Vec<Vec<(usize, u32)>>,
}

impl Row {
    fn new(index: usize, text: Vec<u32>, continuations: &[Vec<u32>]) -> Self {
        let n = text.len();
        let mut tokens = text;
        let mut branch = vec![0; n];
        let mut position: Vec<usize> = (0..n).collect();
        let mut targets = Vec::with_capacity(continuations.len());
        for (k, cont) in continuations.iter().enumerate() {
            let mut t = Vec::with_capacity(cont.len());
            let mut prev = n - 1;
            for (j, &tok) in cont.iter().enumerate() {
                t.push((prev, tok));
                if j + 1 < cont.len() {
                    // This token is an input for predicting the next one of its branch.
                    tokens.push(tok);
                    branch.push(k + 1);
                    position.push(n + j);
                    prev = tokens.len() - 1;
                }
            }
            targets.push(t);
        }
        Self {
            index,
            tokens,
            branch,
            position,
            targets,
        }
    }
}

/// Scores continuations after texts with a model.
pub struct Engine<'m> {
    model: &'m Model,
    options: EngineOptions,
    /// Forward passes of texts run so far (one per text, the shared prefix not counted).
    pub texts_scored: u64,
    /// Tokens run through the transformer so far (prefixes included).
    pub tokens_processed: u64,
}

impl<'m> Engine<'m> {
    /// An engine over `model`.
    pub fn new(model: &'m Model, options: EngineOptions) -> Self {
        Self {
            model,
            options,
            texts_scored: 0,
            tokens_processed: 0,
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// For each text `prefix + suffixes[i]`, the log-probability of each continuation (sum over
    /// its tokens). `continuations` are token ids (tokenised on their own).
    pub fn score(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        continuations: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        let model = self.model;
        let lead = model.leading_ids();
        let prefix_trimmed = prefix.trim_end();
        let mut prefix_ids = lead.clone();
        prefix_ids.extend(model.encode(prefix_trimmed)?);
        if !self.options.prefix_reuse {
            prefix_ids.clear();
        }
        let mut shared = Vec::new();
        let mut alone = Vec::new();
        for (i, suffix) in suffixes.iter().enumerate() {
            let mut ids = lead.clone();
            ids.extend(model.encode(&format!("{prefix}{suffix}"))?);
            if ids.is_empty() {
                ids.push(model.special.bos.or(model.special.eos).unwrap_or(0));
            }
            // The prefix is shared only when tokenising the whole text starts with exactly its
            // tokens (no BPE merge across the boundary) and leaves at least one token.
            if !prefix_ids.is_empty()
                && ids.len() > prefix_ids.len()
                && ids.starts_with(&prefix_ids)
            {
                shared.push(Row::new(i, ids[prefix_ids.len()..].to_vec(), continuations));
            } else {
                alone.push(Row::new(i, ids, continuations));
            }
        }
        let mut out = vec![Vec::new(); suffixes.len()];
        if !shared.is_empty() {
            let mut cache = model.arch.new_cache();
            let p = prefix_ids.len();
            let rows = [Row {
                index: 0,
                tokens: prefix_ids.clone(),
                branch: vec![0; p],
                position: (0..p).collect(),
                targets: vec![],
            }];
            forward_rows(model, &rows, &mut cache)?;
            self.tokens_processed += p as u64;
            self.run_rows(shared, &cache, &mut out)?;
        }
        if !alone.is_empty() {
            let cache = model.arch.new_cache();
            self.run_rows(alone, &cache, &mut out)?;
        }
        self.texts_scored += suffixes.len() as u64;
        Ok(out)
    }

    /// Scores rows in batches after `prefix` (cloned per batch), writing results by row index.
    fn run_rows(
        &mut self,
        mut rows: Vec<Row>,
        prefix: &KvCache,
        out: &mut [Vec<f32>],
    ) -> Result<()> {
        // Similar lengths together means less padding; results do not depend on the grouping.
        rows.sort_by_key(|r| (r.tokens.len(), r.index));
        let model = self.model;
        let chunks: Vec<&[Row]> = rows.chunks(self.options.batch_size.max(1)).collect();
        let scored: Vec<Result<Vec<Vec<f32>>>> = if model.arch.packed().is_some() {
            // Native CPU path: batches run side by side on rayon's threads (each forward pass
            // also splits its own work), so no core waits at the end of a step.
            chunks
                .par_iter()
                .map(|chunk| score_batch(model, chunk, prefix))
                .collect()
        } else {
            chunks
                .iter()
                .map(|chunk| score_batch(model, chunk, prefix))
                .collect()
        };
        for (chunk, scores) in chunks.iter().zip(scored) {
            for (row, s) in chunk.iter().zip(scores?) {
                out[row.index] = s;
                self.tokens_processed += row.tokens.len() as u64;
            }
        }
        Ok(())
    }
}

/// Scores one batch of rows after `prefix`: for each row, each continuation's log-probability.
fn score_batch(model: &Model, chunk: &[Row], prefix: &KvCache) -> Result<Vec<Vec<f32>>> {
    let device = model.arch.device();
    let packed = model.arch.packed();
    // Where each text's tokens start among the batch's hidden rows: packed back to back,
    // or padded to the longest text.
    let s = chunk.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    let starts: Vec<usize> = if packed.is_some() {
        chunk
            .iter()
            .scan(0, |next, r| {
                let start = *next;
                *next += r.tokens.len();
                Some(start)
            })
            .collect()
    } else {
        (0..chunk.len()).map(|b| b * s).collect()
    };
    // Each hidden row once (continuations' first tokens share one), then for each
    // target its row among them and its token.
    let mut picks: Vec<u32> = Vec::new();
    let mut slots = Vec::new();
    let mut token_ids = Vec::new();
    for (row, start) in chunk.iter().zip(&starts) {
        let first = picks.len();
        for t in &row.targets {
            for &(at, tok) in t {
                let r = (start + at) as u32;
                let slot = match picks[first..].iter().position(|&x| x == r) {
                    Some(k) => first + k,
                    None => {
                        picks.push(r);
                        picks.len() - 1
                    }
                };
                slots.push(slot as u32);
                token_ids.push(tok);
            }
        }
    }
    let picked = if let Some(packed) = packed {
        // Only the picked rows leave the last layer, in ascending order.
        let mut keep: Vec<usize> = picks.iter().map(|&r| r as usize).collect();
        keep.sort_unstable();
        let hidden = forward_packed(model, packed, chunk, prefix, &keep)?;
        let order: Vec<u32> = picks
            .iter()
            .map(|&r| keep.partition_point(|&k| k < r as usize) as u32)
            .collect();
        hidden.index_select(&Tensor::new(order.as_slice(), device)?, 0)?
    } else {
        let mut cache = prefix.expand(chunk.len())?;
        let hidden = forward_rows(model, chunk, &mut cache)?;
        let (_, _, d) = hidden.dims3()?;
        let flat = hidden.reshape((chunk.len() * s, d))?;
        flat.index_select(&Tensor::new(picks.as_slice(), device)?, 0)?
    };
    let logp = model.arch.log_probs(&picked)?;
    let slots = Tensor::new(slots.as_slice(), device)?;
    let ids = Tensor::new(token_ids.as_slice(), device)?.unsqueeze(1)?;
    let lp: Vec<f32> = logp
        .index_select(&slots, 0)?
        .gather(&ids, 1)?
        .squeeze(1)?
        .to_vec1()?;
    let mut it = lp.into_iter();
    Ok(chunk
        .iter()
        .map(|row| {
            row.targets
                .iter()
                .map(|t| t.iter().map(|_| it.next().unwrap_or(f32::NAN)).sum())
                .collect()
        })
        .collect())
}

/// Opens, in a `-inf` mask row, what token `i` of `row` may see after a `p`-token prefix: the
/// whole prefix, and its own earlier tokens that are shared text or on its own branch.
fn open_mask_row(mrow: &mut [f32], p: usize, row: &Row, i: usize) {
    mrow[..p].fill(0.0);
    for j in 0..=i {
        if row.branch[j] == 0 || row.branch[j] == row.branch[i] {
            mrow[p + j] = 0.0;
        }
    }
}

/// One packed forward pass (no padding) of `model` through its `packed` passes over `rows`
/// after the one-row `prefix` cache; returns the hidden states `(keep.len(), d)` of the packed
/// tokens `keep` (ascending).
fn forward_packed(
    model: &Model,
    packed: &dyn PackedForward,
    rows: &[Row],
    prefix: &KvCache,
    keep: &[usize],
) -> Result<Tensor> {
    let p = prefix.len();
    let mut tokens = Vec::new();
    let mut positions = Vec::new();
    let mut masks = Vec::with_capacity(rows.len());
    for row in rows {
        let n = row.tokens.len();
        let kv = p + n;
        tokens.extend_from_slice(&row.tokens);
        positions.extend(row.position.iter().map(|&q| (p + q) as u32));
        let mut mask = vec![f32::NEG_INFINITY; n * kv];
        for (i, mrow) in mask.chunks_exact_mut(kv).enumerate() {
            open_mask_row(mrow, p, row, i);
        }
        masks.push(mask);
    }
    let packed_rows: Vec<PackedRow> = rows
        .iter()
        .zip(&masks)
        .map(|(row, mask)| PackedRow {
            len: row.tokens.len(),
            mask,
        })
        .collect();
    let arch = &model.arch;
    let hidden = packed.forward_packed(&tokens, &positions, &packed_rows, prefix, keep)?;
    let d = arch.config().hidden;
    Ok(Tensor::from_vec(hidden, (keep.len(), d), arch.device())?)
}

/// One forward pass over right-padded rows after `cache`; returns hidden states `(b, s, d)`.
fn forward_rows(model: &Model, rows: &[Row], cache: &mut KvCache) -> Result<Tensor> {
    let device: &Device = model.arch.device();
    let b = rows.len();
    let s = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    let p = cache.len();
    let kv = p + s;
    let mut tokens = vec![0u32; b * s];
    let mut positions = vec![0u32; b * s];
    let mut mask = vec![f32::NEG_INFINITY; b * s * kv];
    for (r, row) in rows.iter().enumerate() {
        let n = row.tokens.len();
        for i in 0..s {
            let q = r * s + i;
            let mrow = &mut mask[q * kv..(q + 1) * kv];
            if i < n {
                tokens[q] = row.tokens[i];
                positions[q] = (p + row.position[i]) as u32;
                open_mask_row(mrow, p, row, i);
            } else {
                mrow[..p].fill(0.0);
                // Padding: attends to itself only; nothing attends to it.
                positions[q] = p as u32;
                mrow[p + i] = 0.0;
            }
        }
    }
    let tokens = Tensor::from_vec(tokens, (b, s), device)?;
    let positions = Tensor::from_vec(positions, (b, s), device)?;
    let mask = Tensor::from_vec(mask, (b, 1, s, kv), device)?;
    model.arch.forward(&tokens, &positions, &mask, cache)
}
