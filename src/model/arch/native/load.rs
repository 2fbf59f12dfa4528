//! Loading the native path's weights: each block's matrices rounded to bf16 and packed for
//! promptevo's kernel (q/k/v stacked into one matrix, gate/up into another), its norms and biases
//! as f32, and the RoPE tables.

use candle_core::Device;

use super::{NativeDecoder, NativeLayer, NativeShape};
use crate::error::{Error, Result};
use crate::model::arch::ends::Ends;
use crate::model::arch::spec::{block, DecoderSpec};
use crate::model::kernels::Bf16Matrix;
use crate::model::weights::WeightSource;

impl NativeDecoder {
    /// Loads the blocks, the final norm and the RoPE tables `spec` names from `src` (on the
    /// CPU), after `ends`.
    pub(crate) fn load(src: &mut dyn WeightSource, spec: DecoderSpec, ends: Ends) -> Result<Self> {
        let device = ends.device().clone();
        let norm = src
            .tensor("output_norm.weight", &device)?
            .dequantize(&device)?;
        let (cos, sin) = spec.rope_cos_sin().into_iter().unzip();
        let cfg = &spec.config;
        let shape = NativeShape {
            hidden: cfg.hidden,
            heads: cfg.n_head,
            kv_heads: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            eps: cfg.rms_eps as f32,
            scale: spec.attn_scale as f32,
            rope: spec.rope,
            activation: spec.activation,
            window: spec.window,
        };
        Ok(Self {
            layers: native_layers(src, &spec, &device)?,
            norm: norm.flatten_all()?.to_vec1()?,
            cos,
            sin,
            shape,
            max_positions: spec.max_positions(),
            config: spec.config,
            ends,
        })
    }
}

/// Dequantised f32 values of a stored tensor.
fn values(src: &mut dyn WeightSource, name: &str, device: &Device) -> Result<Vec<f32>> {
    Ok(src
        .tensor(name, device)?
        .dequantize(device)?
        .flatten_all()?
        .to_vec1()?)
}

/// Rows of the named matrices stacked (each `? × cols`) and packed as one bf16 matrix.
fn stacked_bf16(
    src: &mut dyn WeightSource,
    names: &[String],
    cols: usize,
    device: &Device,
) -> Result<Bf16Matrix> {
    let mut all = Vec::new();
    for name in names {
        let v = values(src, name, device)?;
        if cols == 0 || v.len() % cols != 0 {
            return Err(Error::model(
                src.path(),
                format!("{name} is not a matrix of {cols} columns"),
            ));
        }
        all.extend(v);
    }
    let rows = all.len() / cols.max(1);
    Ok(Bf16Matrix::from_f32(&all, rows, cols))
}

/// The native path's weights for every block.
fn native_layers(
    src: &mut dyn WeightSource,
    spec: &DecoderSpec,
    device: &Device,
) -> Result<Vec<NativeLayer>> {
    let hidden = spec.config.hidden;
    (0..spec.config.n_layer)
        .map(|i| {
            let n = |s: &str| block(i, &format!("{s}.weight"));
            let ff_rows = src
                .tensor_dims(&n("ffn_down"))
                .and_then(|d| d.get(1).copied())
                .unwrap_or(0);
            let qkv_bias = if spec.qkv_bias {
                let mut b = values(src, &block(i, "attn_q.bias"), device)?;
                b.extend(values(src, &block(i, "attn_k.bias"), device)?);
                b.extend(values(src, &block(i, "attn_v.bias"), device)?);
                Some(b)
            } else {
                None
            };
            let qk_norm = if spec.qk_norm {
                Some((
                    values(src, &n("attn_q_norm"), device)?,
                    values(src, &n("attn_k_norm"), device)?,
                ))
            } else {
                None
            };
            let post = |src: &mut dyn WeightSource, role: &str| -> Result<Option<Vec<f32>>> {
                if spec.post_norms {
                    values(src, &n(role), device).map(Some)
                } else {
                    Ok(None)
                }
            };
            Ok(NativeLayer {
                attn_norm: values(src, &n("attn_norm"), device)?,
                qkv: stacked_bf16(
                    src,
                    &[n("attn_q"), n("attn_k"), n("attn_v")],
                    hidden,
                    device,
                )?,
                qkv_bias,
                qk_norm,
                wo: stacked_bf16(src, &[n("attn_output")], spec.q_width(), device)?,
                post_attn_norm: post(src, "post_attention_norm")?,
                ffn_norm: values(src, &n("ffn_norm"), device)?,
                gate_up: stacked_bf16(src, &[n("ffn_gate"), n("ffn_up")], hidden, device)?,
                down: stacked_bf16(src, &[n("ffn_down")], ff_rows, device)?,
                post_ffn_norm: post(src, "post_ffw_norm")?,
                rope: spec.layer_rope[i],
                sliding: spec.sliding[i],
            })
        })
        .collect()
}
