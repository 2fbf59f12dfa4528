//! A loaded model ([`Model`]): the transformer of the architecture its file declares, its
//! tokenizer and special tokens, and the chat template it carries; loaded from a GGUF file or a
//! Hugging Face model folder, with the check that the tokenizer fits the embedding matrix.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::arch::{self, Architecture, WeightFormat};
use super::gguf;
use super::tokenizer::{self, SpecialTokens};
use crate::error::{Error, Result};

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
        let enc = super::profile::busy(super::profile::Part::Tokenize, || {
            self.tokenizer.encode(text, false)
        })
        .map_err(Error::Tokenizer)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(Error::Tokenizer)
    }

    /// The ids to put before any text: BOS when the model asks for it.
    pub fn leading_ids(&self) -> Vec<u32> {
        match (self.special.add_bos, self.special.bos) {
            (true, Some(b)) => vec![b],
            _ => vec![],
        }
    }
}
