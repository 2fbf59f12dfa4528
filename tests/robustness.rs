//! Bad input found by reading the code, each a clean one-line error instead of a panic, a wrong
//! position or a misleading hint: malformed GGUF metadata and shapes, error positions in task
//! files, the evaluation log's messages, and how errors print.

mod common;
#[path = "support/gguf.rs"]
mod gguf;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use promptevo::model::tiny::{write_tiny_llama, TinyConfig};
use promptevo::model::{Model, WeightFormat};
use promptevo::run::log::EvaluationLog;
use promptevo::task::Task;

fn tiny(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.gguf");
    write_tiny_llama(&p, &TinyConfig::default()).unwrap();
    p
}

/// Loads `path` in every weight format and returns the (identical) error messages.
fn load_error(path: &Path) -> String {
    let mut first = None;
    for format in [WeightFormat::Bf16, WeightFormat::Native, WeightFormat::F32] {
        let err = match Model::load(path, format, &Device::Cpu) {
            Ok(_) => panic!("{format:?}: a malformed model loaded"),
            Err(e) => e.to_string(),
        };
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        first.get_or_insert(err);
    }
    first.unwrap()
}

fn edited(dir: &Path, edit: impl FnOnce(&mut gguf::Parts)) -> PathBuf {
    let mut parts = gguf::read(&tiny(dir));
    edit(&mut parts);
    let p = dir.join("bad.gguf");
    parts.write(&p);
    p
}

fn matrix(rows: usize, cols: usize) -> QTensor {
    let t = Tensor::ones((rows, cols), DType::F32, &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::F32).unwrap()
}

#[test]
fn zero_heads_is_an_error_not_a_division_by_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), |m| {
        m.set("llama.attention.head_count", Value::U32(0));
    });
    let err = load_error(&p);
    assert!(err.contains("head_count is 0"), "{err}");
}

#[test]
fn a_key_projection_of_the_wrong_shape_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // 2 kv heads × 16 = 32 rows are right; 64 rows reached a slice panic in the native pass.
    let p = edited(dir.path(), |m| {
        m.replace("blk.1.attn_k.weight", matrix(64, 64));
    });
    let err = load_error(&p);
    assert!(
        err.contains("blk.1.attn_k.weight") && err.contains("[32, 64]"),
        "{err}"
    );
}

#[test]
fn a_query_projection_of_the_wrong_shape_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), |m| {
        m.replace("blk.0.attn_q.weight", matrix(32, 64));
    });
    let err = load_error(&p);
    assert!(err.contains("blk.0.attn_q.weight"), "{err}");
}

#[test]
fn a_rope_base_of_the_wrong_type_is_an_error_not_10000() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), |m| {
        m.set("llama.rope.freq_base", Value::String("fast".into()));
    });
    let err = load_error(&p);
    assert!(
        err.contains("llama.rope.freq_base") && err.contains("not a float"),
        "{err}"
    );
}

#[test]
fn an_alignment_of_zero_is_an_error_not_a_division_by_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), |m| {
        m.set("general.alignment", Value::U32(0));
    });
    let err = load_error(&p);
    assert!(err.contains("general.alignment"), "{err}");
}

#[test]
fn a_block_count_beyond_the_tensors_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), |m| {
        m.set("llama.block_count", Value::U64(1 << 60));
    });
    let err = load_error(&p);
    assert!(err.contains("block_count"), "{err}");
}

#[test]
fn a_vocabulary_larger_than_the_embedding_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), |m| {
        m.replace("token_embd.weight", matrix(100, 64));
    });
    let err = load_error(&p);
    assert!(err.contains("embedding matrix only 100 rows"), "{err}");
}

fn write_task(dir: &Path, toml: &str, data: &str) -> PathBuf {
    std::fs::write(dir.join("d.jsonl"), data).unwrap();
    let p = dir.join("t.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

const TASK: &str = "name = \"t\"\nkind = \"classification\"\ntemplate = \"{prompt} {input}\"\nlabels = [\"a\", \"b\"]\ninitial_prompts = [\"Say it.\"]\n[data]\ndev = \"d.jsonl\"\ntest = \"d.jsonl\"\n";

#[test]
fn an_unknown_task_key_is_reported_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    // The unknown key is on line 3.
    let toml = TASK.replacen("template", "colour = \"blue\"\ntemplate", 1);
    assert_eq!(toml.lines().nth(2), Some("colour = \"blue\""));
    let p = write_task(dir.path(), &toml, "{\"input\": \"x\", \"target\": \"a\"}\n");
    let err = Task::load(&p).unwrap_err().to_string();
    assert!(err.contains("(line 3)"), "{err}");
}

#[test]
fn a_bad_target_after_blank_lines_names_its_real_line() {
    let dir = tempfile::tempdir().unwrap();
    // Example id 1 sits on line 4: blank lines are skipped by ids, not by line numbers.
    let data =
        "{\"input\": \"x\", \"target\": \"a\"}\n\n\n{\"input\": \"y\", \"target\": \"zzz\"}\n";
    let p = write_task(dir.path(), TASK, data);
    let err = Task::load(&p).unwrap_err().to_string();
    assert!(err.contains("d.jsonl:4:"), "{err}");
    assert!(!err.contains("each line must be"), "{err}");
}

#[test]
fn a_bad_evaluation_log_line_has_no_task_data_hint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("evaluations.jsonl");
    std::fs::write(&p, "{\"id\": oops}\n").unwrap();
    let err = EvaluationLog::read(&p).unwrap_err().to_string();
    assert!(err.contains("evaluations.jsonl:1:"), "{err}");
    assert!(!err.contains("input"), "{err}");
    assert!(err.contains("start a new run"), "{err}");
}

#[test]
fn an_evaluation_error_prints_its_cause_once() {
    let err: anyhow::Error = promptevo::Error::from(promptevo::evolve::EvolveError::Evaluation(
        "cannot render the chat template: boom".into(),
    ))
    .into();
    let shown = format!("{err:#}");
    assert_eq!(shown.matches("boom").count(), 1, "{shown}");
}

#[test]
fn a_candle_error_with_a_backtrace_prints_one_line() {
    let inner = candle_core::Error::Msg("shape mismatch".into());
    let e = candle_core::Error::WithBacktrace {
        inner: Box::new(inner),
        backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
    };
    let err: anyhow::Error = promptevo::Error::from(e).into();
    let shown = format!("{err:#}");
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert_eq!(shown.matches("shape mismatch").count(), 1, "{shown}");
}

#[test]
fn load_errors_stay_one_line_under_rust_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(dir.path(), TASK, "{\"input\": \"x\", \"target\": \"a\"}\n");
    let model = edited(dir.path(), |m| {
        m.replace("blk.0.ffn_down.weight", matrix(64, 100));
    });
    for weights in ["bf16", "native"] {
        let out = common::bin()
            .args(["eval", "--weights", weights, "--task"])
            .arg(&task)
            .arg("--model")
            .arg(&model)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("bad.gguf"), "{err}");
    }
}

#[test]
fn a_missing_phrase_pool_prints_its_cause_once() {
    let err: anyhow::Error = promptevo::evolve::PhrasePool::from_toml_file(std::path::Path::new(
        "/nonexistent/pool.toml",
    ))
    .unwrap_err()
    .into();
    let shown = format!("{err:#}");
    assert!(shown.contains("/nonexistent/pool.toml"), "{shown}");
    assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
}

#[test]
fn an_evaluation_error_keeps_the_library_error_as_its_source() {
    let e = promptevo::evolve::EvolveError::evaluation(promptevo::Error::Usage("bad flag".into()));
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source.downcast_ref::<promptevo::Error>().is_some(),
        "{source:?}"
    );
    let shown = format!("{:#}", anyhow::Error::from(promptevo::Error::from(e)));
    assert_eq!(shown, "evaluation failed: bad flag");
}
