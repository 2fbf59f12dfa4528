//! The attention key/value cache, as a value the caller owns: clone it to share a prompt prefix,
//! expand it to a batch, truncate it to go back.

use candle_core::{Result, Tensor};

/// Keys and values of every layer for the tokens seen so far, shaped
/// `(batch, kv_heads, len, head_dim)` per layer.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
        }
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
        self.layers
            .iter()
            .flatten()
            .next()
            .map(|(k, _)| k.dim(0).unwrap_or(1))
            .unwrap_or(1)
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
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        if layer + 1 == self.layers.len() {
            self.len = k.dim(2)?;
        }
        Ok((k, v))
    }

    /// A cache whose batch of one row is repeated `batch` times (for scoring many examples
    /// after one shared prefix). A cache that already has `batch` rows is returned as is.
    pub fn expand(&self, batch: usize) -> Result<Self> {
        if self.is_empty() || self.batch() == batch {
            return Ok(self.clone());
        }
        let layers = self
            .layers
            .iter()
            .map(|kv| {
                kv.as_ref()
                    .map(|(k, v)| {
                        let rep = |t: &Tensor| -> Result<Tensor> {
                            let (_, h, l, d) = t.dims4()?;
                            t.broadcast_as((batch, h, l, d))?.contiguous()
                        };
                        Ok((rep(k)?, rep(v)?))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: self.len,
        })
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for kv in self.layers.iter_mut().flatten() {
            *kv = (kv.0.narrow(2, 0, len)?, kv.1.narrow(2, 0, len)?);
        }
        self.len = len;
        Ok(())
    }
}
