//! Builds a `tokenizers::Tokenizer` from a GGUF file's own vocabulary, so that no
//! `tokenizer.json` is needed: byte-level BPE (`tokenizer.ggml.model = "gpt2"`, with the
//! pre-tokenizer `tokenizer.ggml.pre` names) or SentencePiece BPE (`"llama"`, as Llama 2 and
//! Gemma use), each giving the ids llama.cpp gives. A `tokenizer.json` of the same model takes
//! precedence (see [`load`]).

use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
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

/// The regex of Qwen 2/3's byte-level BPE (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2: llama 3's
/// with single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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

/// Loads the tokenizer for a GGUF model. A `tokenizer.json` only applies to the model it belongs
/// to: `<stem>.tokenizer.json` beside `<stem>.gguf` is that model's (and must match its
/// vocabulary); a plain `tokenizer.json` in the folder is used only when it has the GGUF's
/// vocabulary (same size, same ids), so that in a folder of several models it is not applied to
/// the others (a `--mutator-model` of another family, say). Otherwise the GGUF's embedded
/// vocabulary.
pub fn load(gguf: &GgufFile) -> Result<(Tokenizer, SpecialTokens)> {
    let special = SpecialTokens {
        bos: gguf
            .usize_opt("tokenizer.ggml.bos_token_id")?
            .map(|x| x as u32),
        eos: gguf
            .usize_opt("tokenizer.ggml.eos_token_id")?
            .map(|x| x as u32),
        // llama.cpp's default: SentencePiece vocabularies prepend BOS unless the file says not.
        add_bos: gguf.bool_opt("tokenizer.ggml.add_bos_token").unwrap_or(
            gguf.get("tokenizer.ggml.model")
                .and_then(|v| v.to_string().ok())
                .is_some_and(|m| m == "llama"),
        ),
    };
    if let Some(own) = own_tokenizer_json(gguf.path()) {
        let tokenizer = from_json_file(&own)?;
        if let Err(e) = belongs(&tokenizer, gguf) {
            return Err(Error::model(
                &own,
                format!("{e}, so it is not the tokenizer of {}: remove it or replace it with that model's tokenizer.json", gguf.path().display()),
            ));
        }
        return Ok((tokenizer, special));
    }
    let beside = gguf.path().with_file_name("tokenizer.json");
    if beside.is_file() {
        let tokenizer = from_json_file(&beside)?;
        if belongs(&tokenizer, gguf).is_ok() {
            return Ok((tokenizer, special));
        }
    }
    Ok((from_gguf(gguf)?, special))
}

/// The tokenizer of a Hugging Face model folder: `tokenizer.json`, BOS/EOS and `add_bos_token`
/// from `tokenizer_config.json` (else `config.json`'s ids), and its chat template.
pub(crate) fn load_folder(dir: &Path) -> Result<(Tokenizer, SpecialTokens, Option<String>)> {
    let tokenizer = from_json_file(&dir.join("tokenizer.json"))?;
    let read = |name: &str| -> serde_json::Value {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let (tc, config) = (read("tokenizer_config.json"), read("config.json"));
    let id_of = |key: &str| -> Option<u32> {
        let token = &tc[key];
        let text = token.as_str().or(token["content"].as_str());
        text.and_then(|t| tokenizer.token_to_id(t)).or_else(|| {
            config[format!("{key}_id")]
                .as_u64()
                .or(config["text_config"][format!("{key}_id")].as_u64())
                .map(|v| v as u32)
        })
    };
    let special = SpecialTokens {
        bos: id_of("bos_token"),
        eos: id_of("eos_token"),
        add_bos: tc["add_bos_token"].as_bool().unwrap_or(false),
    };
    let chat_template = tc["chat_template"].as_str().map(str::to_string);
    Ok((tokenizer, special, chat_template))
}

/// `<stem>.tokenizer.json` beside `<stem>.gguf`, if present.
pub(crate) fn own_tokenizer_json(model: &Path) -> Option<std::path::PathBuf> {
    let stem = model.file_stem()?.to_string_lossy();
    let p = model.with_file_name(format!("{stem}.tokenizer.json"));
    p.is_file().then_some(p)
}

/// How a tokenizer.json's vocabulary differs from the model's (see [`belongs`]).
#[derive(Debug, thiserror::Error)]
enum VocabMismatch {
    /// The vocabularies differ in size.
    #[error("it has {tokenizer} tokens, the model's vocabulary {model}")]
    Size { tokenizer: usize, model: usize },
    /// A token sits at another id (or is absent: `got` is None).
    #[error("it maps token {token:?} to {got:?}, the model to id {id}")]
    Token {
        token: String,
        got: Option<u32>,
        id: usize,
    },
}

/// Whether `tokenizer` has the GGUF's vocabulary: the same number of tokens, and the GGUF's
/// tokens (a sample of about 512 ids plus BOS and EOS) at the same ids. A GGUF without an
/// embedded vocabulary accepts any tokenizer. The error says what differs.
fn belongs(tokenizer: &Tokenizer, gguf: &GgufFile) -> std::result::Result<(), VocabMismatch> {
    let Ok(tokens) = gguf.strings("tokenizer.ggml.tokens") else {
        return Ok(());
    };
    let n = tokenizer.get_vocab_size(true);
    if n != tokens.len() {
        return Err(VocabMismatch::Size {
            tokenizer: n,
            model: tokens.len(),
        });
    }
    let step = (tokens.len() / 512).max(1);
    let specials = ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]
        .iter()
        .filter_map(|k| gguf.usize_opt(k).ok().flatten());
    for id in (0..tokens.len()).step_by(step).chain(specials) {
        let Some(tok) = tokens.get(id) else { continue };
        let got = tokenizer.token_to_id(tok);
        if got != Some(id as u32) {
            return Err(VocabMismatch::Token {
                token: tok.clone(),
                got,
                id,
            });
        }
    }
    Ok(())
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

/// A BPE merge whose second token is shorter than the `continuing_subword_prefix` (see
/// [`check_bpe_merges`]).
#[derive(Debug, thiserror::Error)]
#[error("BPE merge {merge} does not fit the continuing_subword_prefix {prefix:?}")]
struct BadMerge {
    /// The merge as the file writes it (a JSON string or pair).
    merge: serde_json::Value,
    prefix: String,
}

/// Checks that every BPE merge's second token is long enough to hold the
/// `continuing_subword_prefix` that tokenizers slices off it.
fn check_bpe_merges(json: &serde_json::Value) -> std::result::Result<(), BadMerge> {
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
                return Err(BadMerge {
                    merge: m.clone(),
                    prefix: prefix.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The GGUF tokenizer models (`tokenizer.ggml.model`) built here.
pub(crate) const SUPPORTED_TOKENIZERS: &[&str] = &["gpt2", "llama"];

/// Builds the tokenizer from `tokenizer.ggml.*` metadata: `gpt2` (byte-level BPE) or `llama`
/// (SentencePiece BPE).
pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let path = gguf.path();
    let kind = gguf.string("tokenizer.ggml.model")?;
    match kind.as_str() {
        "gpt2" => byte_level_bpe(gguf),
        "llama" => sentencepiece(gguf),
        _ => Err(Error::model(
            path,
            format!("tokenizer model '{kind}' is not supported from GGUF metadata (supported: {}); put the model's tokenizer.json beside the GGUF file", SUPPORTED_TOKENIZERS.join(", ")),
        )),
    }
}

/// SentencePiece BPE from `tokenizer.ggml.tokens` and `.scores`, as llama.cpp's SPM tokenizer
/// runs it: spaces become `▁` (one is prepended to each text run when
/// `tokenizer.ggml.add_space_prefix`, default true), then adjacent pieces merge while their
/// concatenation is a token, the highest-scoring first (leftmost on ties), and characters that
/// are no token fall back to `<0xXX>` byte tokens. Control and user-defined tokens are matched
/// whole first. The merges list `tokenizers` needs is derived from the scores, as Hugging Face's
/// SentencePiece converter does: every split of a token into two tokens, ranked by the whole
/// token's score.
fn sentencepiece(gguf: &GgufFile) -> Result<Tokenizer> {
    let path = gguf.path();
    let tokens = gguf.strings("tokenizer.ggml.tokens")?;
    let scores = gguf.floats("tokenizer.ggml.scores")?;
    if scores.len() != tokens.len() {
        return Err(Error::model(
            path,
            format!(
                "tokenizer.ggml.scores has {} entries for {} tokens; the file is corrupt",
                scores.len(),
                tokens.len()
            ),
        ));
    }
    let types = gguf
        .ints_opt("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    let add_space_prefix = gguf
        .bool_opt("tokenizer.ggml.add_space_prefix")
        .unwrap_or(true);
    let mut vocab = Vocab::new();
    for (id, tok) in tokens.iter().enumerate() {
        // The first id of a duplicated piece wins, as llama.cpp's text-to-token map keeps it.
        vocab.entry(tok.clone()).or_insert(id as u32);
    }
    // (whole token's score, its id, left, right): the highest score merges first; the stable
    // sort keeps the splits of one token in position order.
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        if vocab.get(tok) != Some(&(id as u32)) {
            continue;
        }
        for (at, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(at);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                merges.push((scores[id], id as u32, l.to_string(), r.to_string()));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let merges: Vec<(String, String)> = merges.into_iter().map(|(_, _, l, r)| (l, r)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .build()
        .map_err(|e| {
            Error::model(
                path,
                format!("cannot build SentencePiece BPE from GGUF vocabulary: {e}"),
            )
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    let replace = Replace::new(" ", "▁").map_err(Error::Tokenizer)?;
    if add_space_prefix {
        tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
            Prepend::new("▁".into()).into(),
            replace.into(),
        ])));
    } else {
        tokenizer.with_normalizer(Some(replace));
    }
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(Error::Tokenizer)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    add_whole_tokens(&mut tokenizer, &tokens, &types);
    Ok(tokenizer)
}

/// Registers the control and user-defined tokens, which are matched whole before the model runs
/// (llama.cpp matches user-defined ones even when special tokens are not parsed).
fn add_whole_tokens(tokenizer: &mut Tokenizer, tokens: &[String], types: &[i64]) {
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
}

/// Byte-level BPE from `tokenizer.ggml.tokens` and `.merges`, with the pre-tokenizer llama.cpp
/// uses for `tokenizer.ggml.pre`.
fn byte_level_bpe(gguf: &GgufFile) -> Result<Tokenizer> {
    let path = gguf.path();
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
    add_whole_tokens(&mut tokenizer, &tokens, &types);
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
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "qwen2" | "deepseek-r1-qwen" => {
            let regex = if pre.starts_with("llama") || pre.starts_with("smaug") { LLAMA3_REGEX } else { QWEN2_REGEX };
            let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(Error::Tokenizer)?;
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
