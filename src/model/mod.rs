//! Language models: GGUF loading, the tokenizer, and the architectures' forward passes with an
//! owned KV cache.

pub mod arch;
pub mod attention;
pub mod generate;
pub mod generate_batch;
pub mod gguf;
mod gguf_scan;
pub mod kernels;
pub mod kv_cache;
pub mod safetensors;
pub mod source;
pub mod template_file;
pub mod tiny;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::Device;

pub use arch::{Architecture, ModelConfig, PackedForward, PackedRow, WeightFormat};
pub use generate::{ChatGenerator, ChatTemplate, GenerateOptions, Generation, Generator};
pub use kv_cache::KvCache;
pub use source::ModelSpec;
pub use tokenizer::SpecialTokens;

use crate::error::{Error, Result};

/// The device named by `--device`: `cpu`, `cuda` / `cuda:N` (needs the `cuda` cargo feature) or
/// `metal` (needs candle's `metal` feature).
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim();
    let unavailable = |what: &str, feature: &str, e: candle_core::Error| {
        Error::Usage(format!(
            "--device {name}: {what} is not available ({e}); rebuild with `cargo build --release --features {feature}` on a machine with its toolkit, or use --device cpu"
        ))
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).map_err(|e| unavailable("Metal", "metal", e)),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "--device {name}: expected cuda or cuda:N with N a GPU number, e.g. cuda:0"
                        ))
                    })?,
                None => {
                    return Err(Error::Usage(format!(
                        "--device {name}: unknown device; use cpu, cuda, cuda:N or metal"
                    )))
                }
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Usage(format!(
                    "--device {name}: this promptevo was built without CUDA support; rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit), or use --device cpu"
                )));
            }
            Device::new_cuda(ordinal).map_err(|e| unavailable("CUDA", "cuda", e))
        }
    }
}

/// A loaded model: weights, tokenizer and the facts about it that runs record.
pub struct Model {
    /// The transformer, of the architecture the file declares.
    pub arch: Box<dyn Architecture>,
    /// Its tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// BOS/EOS ids and whether BOS is prepended.
    pub special: SpecialTokens,
    /// Short name for logs and reports (the file name).
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The GGUF's chat template (Jinja), if it carries one.
    pub chat_template: Option<String>,
}

impl Model {
    /// Loads a GGUF file, or a Hugging Face model folder (`config.json`, `tokenizer.json`,
    /// `*.safetensors`).
    pub fn load(path: &Path, format: WeightFormat, device: &Device) -> Result<Self> {
        if path.is_dir() {
            let arch = arch::load_safetensors(path, format, device)?;
            let (tokenizer, special, chat_template) = tokenizer::load_folder(path)?;
            return Self::assemble(path, arch, tokenizer, special, chat_template);
        }
        let mut gguf = gguf::GgufFile::open(path)?;
        let arch = arch::load(&mut gguf, format, device)?;
        let (tokenizer, special) = tokenizer::load(&gguf)?;
        let chat_template = gguf.string("tokenizer.chat_template").ok();
        Self::assemble(path, arch, tokenizer, special, chat_template)
    }

    /// Checks that the tokenizer fits the embedding matrix and puts the model together.
    fn assemble(
        path: &Path,
        arch: Box<dyn Architecture>,
        tokenizer: tokenizers::Tokenizer,
        special: SpecialTokens,
        chat_template: Option<String>,
    ) -> Result<Self> {
        // A token id past the embedding matrix would index outside it in every forward pass.
        let vocab = arch.config().vocab;
        let ids = tokenizer.get_vocab_size(true);
        let specials = [special.bos, special.eos].into_iter().flatten();
        if ids > vocab || specials.clone().any(|id| id as usize >= vocab) {
            return Err(Error::model(
                path,
                format!(
                    "the tokenizer has {ids} tokens (BOS/EOS {:?}) but the embedding matrix only {vocab} rows; the tokenizer does not belong to this model: use the model's own tokenizer",
                    specials.collect::<Vec<_>>()
                ),
            ));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            arch,
            tokenizer,
            special,
            name,
            path: path.to_path_buf(),
            chat_template,
        })
    }

    /// Token ids of `text` (special tokens such as `<|im_start|>` are recognised; no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The ids to put before any text: BOS when the model asks for it.
    pub fn leading_ids(&self) -> Vec<u32> {
        match (self.special.add_bos, self.special.bos) {
            (true, Some(b)) => vec![b],
            _ => vec![],
        }
    }
}
