//! Where a model's tensors come from, behind one trait: the architectures ask for tensors by
//! role, named as GGUF names them (`token_embd.weight`, `blk.{i}.attn_q.weight`, ...), and a
//! source answers from its own layout. A GGUF file is one source; a Hugging Face safetensors
//! folder (`safetensors.rs`) is another, mapping its names
//! (`model.layers.{i}.self_attn.q_proj.weight`) onto the same roles.

use std::path::Path;

use candle_core::quantized::QTensor;
use candle_core::Device;

use super::gguf::GgufFile;
use crate::error::Result;

/// Tensors by role name, with their shapes known before any is read.
pub(crate) trait WeightSource {
    /// The file (or folder) the weights come from, for error messages.
    fn path(&self) -> &Path;

    /// Whether a tensor of this role is present.
    fn has_tensor(&self, name: &str) -> bool;

    /// Its dimensions (outermost first, as candle orders them), if present.
    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>>;

    /// How many tensors the source holds.
    fn tensor_count(&self) -> usize;

    /// Reads one tensor onto `device`.
    fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor>;
}

impl WeightSource for GgufFile {
    fn path(&self) -> &Path {
        GgufFile::path(self)
    }

    fn has_tensor(&self, name: &str) -> bool {
        GgufFile::has_tensor(self, name)
    }

    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        GgufFile::tensor_dims(self, name).map(<[usize]>::to_vec)
    }

    fn tensor_count(&self) -> usize {
        GgufFile::tensor_count(self)
    }

    fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        GgufFile::tensor(self, name, device)
    }
}
