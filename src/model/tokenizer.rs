//! Builds a `tokenizers::Tokenizer` from a GGUF file's own vocabulary (byte-level BPE), so that no
//! `tokenizer.json` is needed; a `tokenizer.json` beside the model takes precedence.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::GgufFile;
use crate::error::{Error, Result};

/// GGUF token types (llama.cpp's `llama_token_type`) that are matched whole, never split by BPE.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The regex of llama-3-style byte-level BPE (llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token ids and strings the scorer and the generator need beyond plain encoding.
#[derive(Clone, Debug)]
pub struct SpecialTokens {
    /// Beginning-of-sequence id, if the model has one.
    pub bos: Option<u32>,
    /// End-of-sequence id, if the model has one.
    pub eos: Option<u32>,
    /// Whether the model expects BOS at the start of every text.
    pub add_bos: bool,
}

/// Loads the tokenizer for a GGUF model: `tokenizer.json` beside the file if present, else the
/// GGUF's embedded vocabulary.
pub fn load(gguf: &GgufFile) -> Result<(Tokenizer, SpecialTokens)> {
    let special = SpecialTokens {
        bos: gguf
            .usize_opt("tokenizer.ggml.bos_token_id")?
            .map(|x| x as u32),
        eos: gguf
            .usize_opt("tokenizer.ggml.eos_token_id")?
            .map(|x| x as u32),
        add_bos: gguf
            .bool_opt("tokenizer.ggml.add_bos_token")
            .unwrap_or(false),
    };
    let beside = gguf.path().with_file_name("tokenizer.json");
    if beside.is_file() {
        return Ok((from_json_file(&beside)?, special));
    }
    Ok((from_gguf(gguf)?, special))
}

/// Reads a HF `tokenizer.json`.
pub fn from_json_file(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    let invalid = |e: &dyn std::fmt::Display| {
        Error::model(
            path,
            format!("invalid tokenizer.json: {e}; remove it to use the GGUF's own vocabulary"),
        )
    };
    // Checked first, because tokenizers 0.22 panics on both instead of returning an error: a
    // JSON error inside the `decoder` object (its `expect("Helper")`; 1e999 passes a plain
    // syntax check but not this parse), and a BPE merge whose second token is shorter than the
    // model's `continuing_subword_prefix` (a slice out of bounds).
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| invalid(&e))?;
    check_bpe_merges(&json).map_err(|e| invalid(&e))?;
    // A backstop for panics not foreseen above: a bad file is an error, never a crash.
    std::panic::catch_unwind(|| Tokenizer::from_bytes(&bytes))
        .map_err(|_| invalid(&"the tokenizers library panicked while reading it"))?
        .map_err(|e| invalid(&e))
}

/// Checks that every BPE merge's second token is long enough to hold the
/// `continuing_subword_prefix` that tokenizers slices off it.
fn check_bpe_merges(json: &serde_json::Value) -> std::result::Result<(), String> {
    let model = &json["model"];
    let Some(prefix) = model["continuing_subword_prefix"].as_str() else {
        return Ok(());
    };
    let Some(merges) = model["merges"].as_array() else {
        return Ok(());
    };
    for m in merges {
        let second = match m {
            serde_json::Value::String(s) => s.split_once(' ').map(|(_, b)| b),
            serde_json::Value::Array(pair) => pair.get(1).and_then(|b| b.as_str()),
            _ => None,
        };
        if let Some(b) = second {
            if !b.is_char_boundary(prefix.len()) {
                return Err(format!(
                    "BPE merge {m} does not fit the continuing_subword_prefix {prefix:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Builds the tokenizer from `tokenizer.ggml.*` metadata (model `gpt2`: byte-level BPE).
pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let path = gguf.path();
    let kind = gguf.string("tokenizer.ggml.model")?;
    if kind != "gpt2" {
        return Err(Error::model(
            path,
            format!("tokenizer model '{kind}' is not supported from GGUF metadata (only byte-level BPE 'gpt2'); put the model's tokenizer.json beside the GGUF file"),
        ));
    }
    let tokens = gguf.strings("tokenizer.ggml.tokens")?;
    let merges = gguf.strings("tokenizer.ggml.merges")?;
    let types = gguf
        .ints_opt("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    let pre = gguf
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "default".to_string());

    let mut vocab = Vocab::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), id as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::model(path, format!("malformed BPE merge '{m}' in tokenizer.ggml.merges; the file is corrupt")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::model(path, format!("cannot build BPE from GGUF vocabulary: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(&pre, path)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// The pre-tokenizer llama.cpp uses for the declared `tokenizer.ggml.pre`.
fn pre_tokenizer(pre: &str, path: &Path) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, use_regex));
    Ok(match pre {
        // GPT-2's regex.
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        // Digits split one by one, then GPT-2's regex (llama.cpp: "\p{N}" then the GPT-2 pattern).
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)]))
        }
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" => {
            let split = Split::new(SplitPattern::Regex(LLAMA3_REGEX.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Split(split), byte_level(false)]))
        }
        other => {
            return Err(Error::model(
                path,
                format!("pre-tokenizer '{other}' (tokenizer.ggml.pre) is not supported; put the model's tokenizer.json beside the GGUF file"),
            ))
        }
    })
}
