//! Loading the native path's weights: each block's matrices rounded to bf16, or held as 8-bit
//! blocks (Q4_1 and Q8_0 exactly, other types re-quantised), and packed for promptevo's kernels
//! (q/k/v stacked into one matrix, gate/up into another), its norms and biases as f32, and the
//! RoPE tables.

use candle_core::quantized::GgmlDType;
use candle_core::Device;

use super::linear::Linear;
use super::{NativeDecoder, NativeLayer, NativeShape};
use crate::error::{Error, Result};
use crate::model::arch::ends::Ends;
use crate::model::arch::spec::{block, DecoderSpec, WeightFormat};
use crate::model::kernels::{Bf16Matrix, Int8Builder};
use crate::model::weights::WeightSource;

impl NativeDecoder {
    /// Loads the blocks, the final norm and the RoPE tables `spec` names from `src` (on the
    /// CPU), after `ends`, the linears held as `format` says ([`WeightFormat::Int8`] as int8,
    /// anything else as bf16).
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        spec: DecoderSpec,
        ends: Ends,
        format: WeightFormat,
    ) -> Result<Self> {
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
            layers: native_layers(src, &spec, format == WeightFormat::Int8, &device)?,
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

/// Rows of the named matrices stacked (each `? × cols`) into one linear: bf16, or int8 when
/// `int8` (Q4_1 and Q8_0 blocks taken as they are, other types dequantised and re-quantised).
fn stacked(
    src: &mut dyn WeightSource,
    names: &[String],
    cols: usize,
    int8: bool,
    device: &Device,
) -> Result<Linear> {
    let not_matrix = |src: &dyn WeightSource, name: &str| {
        Error::model(
            src.path(),
            format!("{name} is not a matrix of {cols} columns"),
        )
    };
    if int8 {
        let mut b = Int8Builder::new(cols);
        for name in names {
            let t = src.tensor(name, device)?;
            let pushed = match t.dtype() {
                GgmlDType::Q4_1 => b.push_q4_1(&t.data()?),
                GgmlDType::Q8_0 => b.push_q8_0(&t.data()?),
                _ => {
                    let v: Vec<f32> = t.dequantize(device)?.flatten_all()?.to_vec1()?;
                    if cols == 0 || !v.len().is_multiple_of(cols) {
                        return Err(not_matrix(src, name));
                    }
                    b.push_f32(&v);
                    Ok(())
                }
            };
            pushed.map_err(|e| Error::model(src.path(), format!("{name}: {e}")))?;
        }
        return Ok(Linear::Int8(b.build()));
    }
    let mut all = Vec::new();
    for name in names {
        let v = values(src, name, device)?;
        if cols == 0 || v.len() % cols != 0 {
            return Err(not_matrix(src, name));
        }
        all.extend(v);
    }
    let rows = all.len() / cols.max(1);
    Ok(Linear::Bf16(Bf16Matrix::from_f32(&all, rows, cols)))
}

/// The native path's weights for every block.
fn native_layers(
    src: &mut dyn WeightSource,
    spec: &DecoderSpec,
    int8: bool,
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
                qkv: stacked(
                    src,
                    &[n("attn_q"), n("attn_k"), n("attn_v")],
                    hidden,
                    int8,
                    device,
                )?,
                qkv_bias,
                qk_norm,
                wo: stacked(src, &[n("attn_output")], spec.q_width(), int8, device)?,
                post_attn_norm: post(src, "post_attention_norm")?,
                ffn_norm: values(src, &n("ffn_norm"), device)?,
                gate_up: stacked(src, &[n("ffn_gate"), n("ffn_up")], hidden, int8, device)?,
                down: stacked(src, &[n("ffn_down")], ff_rows, int8, device)?,
                post_ffn_norm: post(src, "post_ffw_norm")?,
                rope: spec.layer_rope[i],
                sliding: spec.sliding[i],
            })
        })
        .collect()
}
