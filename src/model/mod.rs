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
mod loaded;
pub mod profile;
pub mod safetensors;
pub mod source;
pub mod template_file;
pub mod tiny;
pub mod tokenizer;
pub mod weights;

use candle_core::Device;

pub use arch::{Architecture, ModelConfig, PackedForward, PackedRow, WeightFormat};
pub use generate::{ChatGenerator, ChatTemplate, GenerateOptions, Generation, Generator};
pub use kv_cache::KvCache;
pub use loaded::Model;
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
