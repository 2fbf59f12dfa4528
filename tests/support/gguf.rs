//! Test helper: rewrites a GGUF file with edited metadata or tensors (for malformed-model tests).
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

/// A GGUF's metadata and tensors, sorted by name so that rewriting is deterministic.
pub struct Parts {
    /// Metadata key-value pairs.
    pub metadata: Vec<(String, Value)>,
    /// Named tensors.
    pub tensors: Vec<(String, QTensor)>,
}

/// Reads every metadata entry and tensor of `path`.
pub fn read(path: &Path) -> Parts {
    let mut f = std::fs::File::open(path).unwrap();
    let content = Content::read(&mut f).unwrap();
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let tensors = names
        .into_iter()
        .map(|n| {
            let t = content.tensor(&mut f, &n, &Device::Cpu).unwrap();
            (n, t)
        })
        .collect();
    let mut metadata: Vec<(String, Value)> = content.metadata.into_iter().collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    Parts { metadata, tensors }
}

impl Parts {
    /// Writes the parts as a GGUF file.
    pub fn write(&self, path: &Path) {
        let md: Vec<(&str, &Value)> = self.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut f = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &md, &ts).unwrap();
    }

    /// Sets (or adds) a metadata entry.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Replaces a tensor (which must exist).
    pub fn replace(&mut self, name: &str, t: QTensor) -> &mut Self {
        let slot = self.tensors.iter_mut().find(|(n, _)| n == name).unwrap();
        slot.1 = t;
        self
    }
}
