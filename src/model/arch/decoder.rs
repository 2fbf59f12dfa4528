//! The pre-norm decoder-only transformer every architecture here is an instance of: a
//! [`DecoderSpec`] says how one departs from plain llama, and [`load`] checks a file's tensors
//! against it and loads the model onto the forward path that fits: the native CPU bf16 path
//! ([`NativeDecoder`], whose results do not depend on batch, padding or cache, and which packs
//! rows without padding) for `--weights bf16` or `--weights int8` on the CPU, else candle's ops
//! ([`CandleDecoder`]: any device, any [`WeightFormat`]). Both share the spec types
//! ([`super::spec`]) and the embedding and output projection ([`Ends`]).

use candle_core::Device;

use super::candle::CandleDecoder;
use super::ends::Ends;
use super::forward::Architecture;
use super::metadata::bad_file;
use super::native::NativeDecoder;
use super::spec::{block, DecoderSpec, WeightFormat};
use crate::error::Result;
use crate::model::weights::WeightSource;

/// Loads the weights `spec` names from `src` onto `device`, held as `format` says: the native
/// path for bf16 or int8 on the CPU, candle's otherwise.
pub(crate) fn load(
    src: &mut dyn WeightSource,
    mut spec: DecoderSpec,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let arch = spec.config.architecture.clone();
    let path = src.path().to_path_buf();
    let vocab = check_shapes(src, &spec).map_err(|e| bad_file(&path, &arch, e.to_string()))?;
    if spec.layer_rope.len() != spec.config.n_layer
        || spec.sliding.len() != spec.config.n_layer
        || spec.layer_rope.iter().any(|&t| t >= spec.rope_tables.len())
        || spec
            .rope_freq_factors
            .as_ref()
            .is_some_and(|f| f.len() != spec.config.head_dim / 2)
    {
        return Err(bad_file(
            &path,
            &arch,
            "inconsistent per-layer RoPE or sliding-window settings".into(),
        ));
    }
    spec.config.vocab = vocab;
    let ends = Ends::load(src, &spec, device)?;
    let native = matches!(format, WeightFormat::Bf16 | WeightFormat::Int8);
    if native && device.is_cpu() {
        Ok(Box::new(NativeDecoder::load(src, spec, ends, format)?))
    } else {
        Ok(Box::new(CandleDecoder::load(
            src, spec, ends, format, device,
        )?))
    }
}

/// What is wrong with a file's tensors (see [`check_shapes`]); the caller adds the file and
/// the fix.
#[derive(Debug, thiserror::Error)]
enum ShapeError {
    /// A tensor the forward pass reads is not in the file.
    #[error("tensor '{name}' is missing")]
    Missing { name: String },
    /// A tensor's shape differs from what the metadata implies.
    #[error("tensor '{name}' has shape {got:?}, the metadata implies {implied:?}")]
    Implied {
        name: String,
        got: Vec<usize>,
        implied: Vec<usize>,
    },
    /// A tensor that sets a size (vocabulary, feed-forward width) has the wrong form.
    #[error("tensor '{name}' has shape {got:?}, want {want}")]
    Form {
        name: String,
        got: Vec<usize>,
        /// The form wanted, e.g. `[vocab, 576]`.
        want: String,
    },
    /// The block count is zero or more than the file's tensors can hold.
    #[error(
        "block_count is {blocks} but the file holds {tensors} tensors ({per_block} per block)"
    )]
    BlockCount {
        blocks: usize,
        tensors: usize,
        per_block: usize,
    },
}

/// Checks every tensor the forward pass reads against the metadata's shape before any is
/// loaded, so that a malformed file is an error naming the tensor instead of a slice panic or a
/// shape error deep in a forward pass. Returns the vocabulary size.
fn check_shapes(
    src: &dyn WeightSource,
    spec: &DecoderSpec,
) -> std::result::Result<usize, ShapeError> {
    let cfg = &spec.config;
    let dims = |name: &str| -> std::result::Result<Vec<usize>, ShapeError> {
        src.tensor_dims(name).ok_or_else(|| ShapeError::Missing {
            name: name.to_string(),
        })
    };
    let want = |name: &str, shape: &[usize]| -> std::result::Result<(), ShapeError> {
        let got = dims(name)?;
        if got != shape {
            return Err(ShapeError::Implied {
                name: name.to_string(),
                got,
                implied: shape.to_vec(),
            });
        }
        Ok(())
    };
    // A block count beyond what the file holds is refused before any per-block loop or
    // allocation.
    let per_block = spec.tensors_per_block();
    if cfg.n_layer == 0 || cfg.n_layer > src.tensor_count() / per_block {
        return Err(ShapeError::BlockCount {
            blocks: cfg.n_layer,
            tensors: src.tensor_count(),
            per_block,
        });
    }
    let (h, q, kv, d) = (
        cfg.hidden,
        spec.q_width(),
        cfg.n_kv_head * cfg.head_dim,
        cfg.head_dim,
    );
    let vocab = match dims("token_embd.weight")?.as_slice() {
        &[v, c] if c == h && v > 0 => v,
        got => {
            return Err(ShapeError::Form {
                name: "token_embd.weight".into(),
                got: got.to_vec(),
                want: format!("[vocab, {h}]"),
            })
        }
    };
    if src.has_tensor("output.weight") {
        want("output.weight", &[vocab, h])?;
    }
    want("output_norm.weight", &[h])?;
    for i in 0..cfg.n_layer {
        let n = |s: &str| block(i, &format!("{s}.weight"));
        let ff = match dims(&n("ffn_gate"))?.as_slice() {
            &[f, c] if c == h && f > 0 => f,
            got => {
                return Err(ShapeError::Form {
                    name: n("ffn_gate"),
                    got: got.to_vec(),
                    want: format!("[ffn, {h}]"),
                })
            }
        };
        want(&n("attn_norm"), &[h])?;
        want(&n("ffn_norm"), &[h])?;
        want(&n("attn_q"), &[q, h])?;
        want(&n("attn_k"), &[kv, h])?;
        want(&n("attn_v"), &[kv, h])?;
        want(&n("attn_output"), &[h, q])?;
        want(&n("ffn_up"), &[ff, h])?;
        want(&n("ffn_down"), &[h, ff])?;
        if spec.qk_norm {
            want(&n("attn_q_norm"), &[d])?;
            want(&n("attn_k_norm"), &[d])?;
        }
        if spec.post_norms {
            want(&n("post_attention_norm"), &[h])?;
            want(&n("post_ffw_norm"), &[h])?;
        }
        if spec.qkv_bias {
            want(&block(i, "attn_q.bias"), &[q])?;
            want(&block(i, "attn_k.bias"), &[kv])?;
            want(&block(i, "attn_v.bias"), &[kv])?;
        }
    }
    Ok(vocab)
}
