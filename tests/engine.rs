//! The scoring engine's answer must not depend on how the work was split: fresh forward passes,
//! a reused prefix cache, any batch size and any position in the batch agree within 1e-3 nats.
//! Runs on a tiny random llama written by the test, for every weight format.

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use promptevo::model::tiny::{write_tiny_llama, TinyConfig};
use promptevo::model::{Model, WeightFormat};
use promptevo::score::{Engine, EngineOptions};

fn tiny(dir: &std::path::Path, dtype: GgmlDType) -> std::path::PathBuf {
    let p = dir.join(format!("tiny-{dtype:?}.gguf"));
    write_tiny_llama(
        &p,
        &TinyConfig {
            dtype,
            ..Default::default()
        },
    )
    .unwrap();
    p
}

/// log P(continuation | text) by one plain causal forward over text + continuation.
fn brute_force(model: &Model, text: &str, cont: &[u32]) -> f32 {
    let mut ids = model.encode(text).unwrap();
    let n = ids.len();
    ids.extend_from_slice(cont);
    let logp = model.arch.causal_log_probs(&ids).unwrap();
    cont.iter()
        .enumerate()
        .map(|(j, &t)| logp[n - 1 + j][t as usize])
        .sum()
}

#[test]
fn scores_do_not_depend_on_prefix_reuse_batching_or_position() {
    let dir = tempfile::tempdir().unwrap();
    let suffixes: Vec<String> = [
        "the pos is in",
        "a",
        "these are the most positive hints of the text",
        "pin\nAnswer:",
        "x y z w",
        "the the the",
        "   spaced   out  ",
        "é ü 1234",
        "one more",
    ]
    .iter()
    .map(|s| format!("{s}\nAnswer:"))
    .collect();
    let prefix = "Classify the text.\n\nText: ";
    for (dtype, format) in [
        (GgmlDType::Q8_0, WeightFormat::Native),
        (GgmlDType::Q4_1, WeightFormat::Q8_0),
        (GgmlDType::Q4_0, WeightFormat::Bf16),
        (GgmlDType::F16, WeightFormat::F32),
        (GgmlDType::Q4_1, WeightFormat::Int8),
        (GgmlDType::F16, WeightFormat::Int8),
    ] {
        let model = Model::load(&tiny(dir.path(), dtype), format, &Device::Cpu).unwrap();
        // Multi-token continuations exercise the label branches.
        let conts: Vec<Vec<u32>> = [" the", " pos", " in the", "!"]
            .iter()
            .map(|c| model.encode(c).unwrap())
            .collect();
        assert!(conts.iter().any(|c| c.len() > 1));
        let reference = Engine::new(
            &model,
            EngineOptions {
                batch_size: 1,
                prefix_reuse: false,
            },
        )
        .score(prefix, &suffixes, &conts)
        .unwrap();
        for (i, suffix) in suffixes.iter().enumerate() {
            for (k, cont) in conts.iter().enumerate() {
                let want = brute_force(&model, &format!("{prefix}{suffix}"), cont);
                assert!(
                    (reference[i][k] - want).abs() < 1e-3,
                    "{dtype:?}/{format:?} text {i} cont {k}: engine {} vs plain forward {want}",
                    reference[i][k]
                );
            }
        }
        for batch_size in [1, 2, 3, 8, 16] {
            for prefix_reuse in [false, true] {
                let got = Engine::new(
                    &model,
                    EngineOptions {
                        batch_size,
                        prefix_reuse,
                    },
                )
                .score(prefix, &suffixes, &conts)
                .unwrap();
                for (g, r) in got.iter().flatten().zip(reference.iter().flatten()) {
                    assert!(
                        (g - r).abs() < 1e-3,
                        "{dtype:?}/{format:?} batch {batch_size} reuse {prefix_reuse}: {g} vs {r}"
                    );
                }
            }
        }
        // A text scored alone and scored amid others gets the same score.
        let alone = Engine::new(&model, EngineOptions::default())
            .score(prefix, &suffixes[2..3], &conts)
            .unwrap();
        for (a, r) in alone[0].iter().zip(&reference[2]) {
            assert!((a - r).abs() < 1e-3);
        }
    }
}

#[test]
fn tiny_model_tokenizer_round_trips_and_keeps_chat_markers_whole() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(
        &tiny(dir.path(), GgmlDType::Q8_0),
        WeightFormat::Native,
        &Device::Cpu,
    )
    .unwrap();
    let text = "<|im_start|>user\nthe pin, é 42!<|im_end|>";
    let ids = model.encode(text).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> must be one token");
    assert_eq!(*ids.last().unwrap(), 2, "<|im_end|> must be one token");
    assert_eq!(model.decode(&ids).unwrap(), text);
}

#[test]
fn real_model_scores_do_not_depend_on_prefix_reuse_or_batching() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "the default model is missing: run ./models/fetch-default.sh first"
    );
    let task = promptevo::task::Task::load(&root.join("experiments/tasks/sst2.toml")).unwrap();
    let (before, after) = task.template.split(&task.initial_prompts[0]);
    let suffixes: Vec<String> = task.test[..12]
        .iter()
        .map(|e| format!("{}{after}", e.input))
        .collect();
    for format in [WeightFormat::Bf16, WeightFormat::F32, WeightFormat::Int8] {
        let model = Model::load(&path, format, &Device::Cpu).unwrap();
        let labels: Vec<Vec<u32>> = task
            .verbalizers()
            .iter()
            .map(|v| model.encode(v).unwrap())
            .collect();
        let fresh = Engine::new(
            &model,
            EngineOptions {
                batch_size: 1,
                prefix_reuse: false,
            },
        )
        .score(&before, &suffixes, &labels)
        .unwrap();
        let mut worst = 0f32;
        for (batch_size, prefix_reuse) in [(1, true), (5, true), (12, true), (4, false)] {
            let got = Engine::new(
                &model,
                EngineOptions {
                    batch_size,
                    prefix_reuse,
                },
            )
            .score(&before, &suffixes, &labels)
            .unwrap();
            let mut w = 0f32;
            for (g, f) in got.iter().flatten().zip(fresh.iter().flatten()) {
                w = w.max((g - f).abs());
            }
            worst = worst.max(w);
        }
        eprintln!("{format:?}: max |fresh - (cached, batched)| = {worst:.2e} nats");
        assert!(
            worst < 1e-3,
            "{format:?}: scores depend on how the work was split: {worst} nats"
        );
    }
}

#[test]
fn every_gguf_type_candle_reads_loads_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    // 256-wide rows so that the K-quants (256-value blocks) apply too.
    let base = TinyConfig {
        layers: 1,
        hidden: 256,
        heads: 4,
        kv_heads: 2,
        ffn: 512,
        ..Default::default()
    };
    let prefix = "Classify the text.\n\nText: ";
    let suffixes: Vec<String> = [
        "the pin\nAnswer:",
        "these are the most positive hints\nAnswer:",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    use GgmlDType::*;
    for dtype in [F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K] {
        let path = dir.path().join(format!("tiny-{dtype:?}.gguf"));
        write_tiny_llama(
            &path,
            &TinyConfig {
                dtype,
                ..base.clone()
            },
        )
        .unwrap();
        for format in [WeightFormat::Bf16, WeightFormat::Native, WeightFormat::Int8] {
            let model = Model::load(&path, format, &Device::Cpu)
                .unwrap_or_else(|e| panic!("{dtype:?}/{format:?}: {e}"));
            let conts: Vec<Vec<u32>> = [" the", " pos in"]
                .iter()
                .map(|c| model.encode(c).unwrap())
                .collect();
            let got = Engine::new(&model, EngineOptions::default())
                .score(prefix, &suffixes, &conts)
                .unwrap();
            for (i, s) in suffixes.iter().enumerate() {
                for (k, c) in conts.iter().enumerate() {
                    let want = brute_force(&model, &format!("{prefix}{s}"), c);
                    assert!(
                        got[i][k].is_finite() && (got[i][k] - want).abs() < 1e-3,
                        "{dtype:?}/{format:?}: {} vs {want}",
                        got[i][k]
                    );
                }
            }
        }
    }
}
