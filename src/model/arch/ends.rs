//! The two ends of a decoder that both forward paths share: the token embedding going in and the
//! output projection (with soft-capping and log-softmax) coming out. Whatever runs the blocks in
//! between, a token's embedding and a hidden state's log-probabilities are computed here, once.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::spec::DecoderSpec;
use crate::error::Result;
use crate::model::kernels::Q8Matrix;
use crate::model::weights::WeightSource;

/// The token embedding and the output projection of a loaded model.
pub(crate) struct Ends {
    /// `token_embd.weight`, as stored.
    embed: Arc<QTensor>,
    /// Factor of the token embeddings (Gemma: `sqrt(hidden)`).
    embed_scale: Option<f32>,
    /// The output projection (the embedding matrix when the file ties them).
    lm_head: QMatMul,
    /// The output projection for [`Q8Matrix`] when it is Q8_0 on a CPU that runs that kernel
    /// (the same bits as `lm_head`, faster); None: `lm_head` runs.
    lm_head_q8: Option<Q8Matrix>,
    /// Final logit soft-capping: `c · tanh(logits / c)`.
    softcap: Option<f32>,
    /// Where the weights live.
    device: Device,
}

impl Ends {
    /// Loads the embedding and the output projection `spec`'s model reads from `src`.
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        spec: &DecoderSpec,
        device: &Device,
    ) -> Result<Self> {
        let embed = Arc::new(src.tensor("token_embd.weight", device)?);
        let head = if src.has_tensor("output.weight") {
            Arc::new(src.tensor("output.weight", device)?)
        } else {
            // Tied embeddings (SmolLM2, Gemma): the output projection is the embedding matrix.
            embed.clone()
        };
        let lm_head_q8 = if device.is_cpu() {
            Q8Matrix::new(&head)
        } else {
            None
        };
        Ok(Self {
            embed,
            embed_scale: spec.embed_scale,
            lm_head: QMatMul::from_arc(head)?,
            lm_head_q8,
            softcap: spec.softcap,
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Token embeddings of `tokens` (any shape of u32 ids; one more dimension of `hidden`),
    /// scaled when the architecture says so.
    pub(crate) fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let x = self.embed.embedding(tokens)?;
        Ok(match self.embed_scale {
            Some(k) => (x * f64::from(k))?,
            None => x,
        })
    }

    /// [`Ends::embed`] of `ids` as rows of `hidden` f32s back to back.
    pub(crate) fn embed_rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let ids = Tensor::new(ids, &self.device)?;
        Ok(self.embed(&ids)?.flatten_all()?.to_vec1()?)
    }

    /// Log-probabilities over the vocabulary (`(n, vocab)`, f32) for hidden states `(n, hidden)`.
    pub(crate) fn log_probs(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = match (&self.lm_head_q8, hidden.dims2()) {
            (Some(q8), Ok((m, _))) => {
                let x: Vec<f32> = hidden.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                Tensor::from_vec(q8.matmul(&x, m), (m, q8.rows()), &self.device)?
            }
            _ => self.lm_head.forward(hidden)?.to_dtype(DType::F32)?,
        };
        let logits = match self.softcap {
            Some(c) => ((logits / f64::from(c))?.tanh()? * f64::from(c))?,
            None => logits,
        };
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }
}
