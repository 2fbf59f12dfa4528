//! The attention key/value cache, as a value the caller owns: clone it to share a prompt prefix,
//! expand it to a batch, truncate it to go back.
//!
//! A layer's keys and values are held either as candle tensors (the candle forward path, any
//! device) or as plain f32 rows on the CPU (the native bf16 path): one growable buffer per batch
//! row, so appending a step's keys copies only the new positions, never the whole cache.

use candle_core::{Result, Tensor};

/// Keys and values of one batch row on the CPU, each `(len, kv_heads, head_dim)` row major.
#[derive(Clone, Debug, Default)]
pub(crate) struct RowKv {
    /// Keys.
    pub k: Vec<f32>,
    /// Values.
    pub v: Vec<f32>,
}

/// One layer's cache in the form its forward path reads.
#[derive(Clone, Debug)]
enum LayerKv {
    /// `(batch, kv_heads, len, head_dim)` tensors.
    Tensors(Tensor, Tensor),
    /// One CPU buffer per batch row.
    Rows(Vec<RowKv>),
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
    /// Position of every cached token, per batch row (what sliding windows are measured in).
    positions: Vec<Vec<u32>>,
}

fn mixed() -> candle_core::Error {
    candle_core::Error::Msg("KV cache layer holds tensors and CPU rows at once".into())
}

impl KvCache {
    /// An empty cache for a model with `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
            positions: Vec::new(),
        }
    }

    /// Records the positions of a step's new tokens (`batch × s`, row major), once per step.
    pub(crate) fn push_positions(&mut self, batch: usize, new: &[u32]) -> Result<()> {
        if self.positions.is_empty() {
            self.positions = vec![Vec::new(); batch];
        }
        if self.positions.len() != batch || !new.len().is_multiple_of(batch.max(1)) {
            candle_core::bail!(
                "KV cache holds positions of {} rows, the step has {batch}",
                self.positions.len()
            );
        }
        let s = new.len() / batch.max(1);
        for (row, chunk) in self.positions.iter_mut().zip(new.chunks(s.max(1))) {
            row.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Positions of the cached tokens of batch row `row` (empty when none were recorded).
    pub(crate) fn positions(&self, row: usize) -> &[u32] {
        self.positions.get(row).map_or(&[], Vec::as_slice)
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch size of the cached tensors (1 for an empty cache).
    pub fn batch(&self) -> usize {
        match self.layers.iter().flatten().next() {
            Some(LayerKv::Tensors(k, _)) => k.dim(0).unwrap_or(1),
            Some(LayerKv::Rows(rows)) => rows.len(),
            None => 1,
        }
    }

    /// Appends this step's keys and values for `layer` and returns the full keys and values.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.layers[layer] {
            None => (k, v),
            Some(LayerKv::Tensors(pk, pv)) => {
                (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?)
            }
            Some(LayerKv::Rows(_)) => return Err(mixed()),
        };
        self.layers[layer] = Some(LayerKv::Tensors(k.clone(), v.clone()));
        if layer + 1 == self.layers.len() {
            self.len = k.dim(2)?;
        }
        Ok((k, v))
    }

    /// Appends `s` new positions of `batch` rows to `layer`'s CPU rows, reading row `r`'s keys
    /// and values for position `i` at `get(r, i)` (`(k, v)`, each `width = kv_heads · head_dim`
    /// long); returns every row's full keys and values.
    pub(crate) fn append_rows<'a>(
        &mut self,
        layer: usize,
        (batch, s, width): (usize, usize, usize),
        get: impl Fn(usize, usize) -> (&'a [f32], &'a [f32]),
    ) -> Result<&[RowKv]> {
        let slot = &mut self.layers[layer];
        if slot.is_none() {
            *slot = Some(LayerKv::Rows(vec![RowKv::default(); batch]));
        }
        let rows = match slot {
            Some(LayerKv::Rows(rows)) => rows,
            _ => return Err(mixed()),
        };
        if rows.len() != batch {
            candle_core::bail!("KV cache holds {} rows, the step has {batch}", rows.len());
        }
        for (r, row) in rows.iter_mut().enumerate() {
            for i in 0..s {
                let (k, v) = get(r, i);
                if k.len() != width || v.len() != width {
                    candle_core::bail!(
                        "KV cache rows are {width} wide, the step's are {}",
                        k.len()
                    );
                }
                row.k.extend_from_slice(k);
                row.v.extend_from_slice(v);
            }
        }
        let len = rows
            .first()
            .map_or(0, |r| r.k.len().checked_div(width).unwrap_or(0));
        if layer + 1 == self.layers.len() {
            self.len = len;
        }
        match &self.layers[layer] {
            Some(LayerKv::Rows(rows)) => Ok(rows),
            _ => Err(mixed()),
        }
    }

    /// `layer`'s CPU rows, if it holds them.
    pub(crate) fn rows(&self, layer: usize) -> Option<&[RowKv]> {
        match self.layers.get(layer) {
            Some(Some(LayerKv::Rows(rows))) => Some(rows),
            _ => None,
        }
    }

    /// A cache whose batch of one row is repeated `batch` times (for scoring many examples
    /// after one shared prefix). A cache that already has `batch` rows is returned as is.
    pub(crate) fn expand(&self, batch: usize) -> Result<Self> {
        if self.is_empty() || self.batch() == batch {
            return Ok(self.clone());
        }
        let layers = self
            .layers
            .iter()
            .map(|kv| {
                kv.as_ref()
                    .map(|kv| match kv {
                        LayerKv::Tensors(k, v) => {
                            let rep = |t: &Tensor| -> Result<Tensor> {
                                let (_, h, l, d) = t.dims4()?;
                                t.broadcast_as((batch, h, l, d))?.contiguous()
                            };
                            Ok(LayerKv::Tensors(rep(k)?, rep(v)?))
                        }
                        LayerKv::Rows(rows) => match rows.as_slice() {
                            [row] => Ok(LayerKv::Rows(vec![row.clone(); batch])),
                            _ => candle_core::bail!(
                                "only a one-row KV cache can be expanded, this one has {}",
                                rows.len()
                            ),
                        },
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let positions = match self.positions.as_slice() {
            [row] => vec![row.clone(); batch],
            _ => self.positions.clone(),
        };
        Ok(Self {
            layers,
            len: self.len,
            positions,
        })
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        let old = self.len;
        for kv in self.layers.iter_mut().flatten() {
            match kv {
                LayerKv::Tensors(k, v) => {
                    *kv = LayerKv::Tensors(k.narrow(2, 0, len)?, v.narrow(2, 0, len)?)
                }
                LayerKv::Rows(rows) => {
                    for row in rows {
                        let width = row.k.len() / old.max(1);
                        row.k.truncate(len * width);
                        row.v.truncate(len * width);
                    }
                }
            }
        }
        for row in &mut self.positions {
            row.truncate(len);
        }
        self.len = len;
        Ok(())
    }
}
