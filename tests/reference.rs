//! Agreement with an independent implementation: llama.cpp (through llama-cpp-python) produced
//! `tests/reference/*.json` from the same GGUF file (see tests/reference/README.md). Token ids
//! must be identical; next-token log-probs must agree (see `check_logprobs` for the bounds).

use std::path::PathBuf;

use candle_core::Device;
use promptevo::model::{Model, WeightFormat};
use serde::Deserialize;

#[derive(Deserialize)]
struct Tokens {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct LogProbs {
    texts: Vec<Text>,
}

#[derive(Deserialize)]
struct Text {
    text: String,
    ids: Vec<u32>,
    positions: Vec<Position>,
}

#[derive(Deserialize)]
struct Position {
    pos: usize,
    argmax: u32,
    top: Vec<(u32, f32)>,
    logprobs_of: std::collections::BTreeMap<String, f32>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(format: WeightFormat) -> Model {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "the default model is missing: run ./models/fetch-default.sh first"
    );
    Model::load(&p, format, &Device::Cpu).unwrap()
}

#[test]
fn token_ids_match_llama_cpp_on_every_reference_string() {
    let model = load(WeightFormat::Native);
    let tokens: Tokens = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/reference/tokens.json")).unwrap(),
    )
    .unwrap();
    assert!(tokens.cases.len() >= 200);
    let mismatches: Vec<String> = tokens
        .cases
        .iter()
        .filter_map(|c| {
            let got = model.encode(&c.text).unwrap();
            (got != c.ids).then(|| format!("{:?}: ours {:?} llama.cpp {:?}", c.text, got, c.ids))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} strings differ:\n{}",
        mismatches.len(),
        tokens.cases.len(),
        mismatches.join("\n")
    );
}

/// Compares our next-token log-probs with llama.cpp's at every position of the reference texts.
///
/// SmolLM2-135M amplifies arithmetic differences: llama.cpp rounds activations to 8 bits (Q8_1)
/// before its Q4_1 products, and our own engine's f32 and Q8_0 weight paths differ from each
/// other by up to ~1.4 nats on some low-ranked tokens. So beyond position 0 we assert on the
/// distribution of differences (measured 2026-11-26: argmax agreement 294/304, median |Δ| ≈ 0.07),
/// which any real defect (a wrong RoPE layout gives ~11 nats, a wrong mask ~0.7 everywhere) breaks.
fn check_logprobs(format: WeightFormat) {
    let model = load(format);
    let refs: LogProbs = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/reference/logprobs.json")).unwrap(),
    )
    .unwrap();
    let (mut diffs, mut agree, mut total) = (Vec::new(), 0usize, 0usize);
    let mut label_checked = false;
    for text in &refs.texts {
        let ours = model.arch.causal_log_probs(&text.ids).unwrap();
        for p in &text.positions {
            let row = &ours[p.pos];
            let argmax = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32)
                .unwrap();
            total += 1;
            agree += usize::from(argmax == p.argmax);
            for &(id, want) in &p.top {
                let d = (row[id as usize] - want).abs();
                // Position 0 has no attention mixing: only dequantisation noise.
                if p.pos == 0 {
                    assert!(
                        d <= 0.25,
                        "{format:?}: log P({id}) at position 0: ours {} llama.cpp {want}",
                        row[id as usize]
                    );
                }
                diffs.push(d);
            }
            // The sentiment text ends on "Sentiment:": the label decision must agree.
            if let (true, Some(pos), Some(neg)) = (
                text.text.ends_with("Sentiment:"),
                p.logprobs_of.get("2731"),
                p.logprobs_of.get("3524"),
            ) {
                let (op, on) = (row[2731], row[3524]);
                assert_eq!(
                    op > on,
                    pos > neg,
                    "{format:?}: label decision differs ({op} vs {on}; llama.cpp {pos} vs {neg})"
                );
                let (ours_margin, ref_margin) = (op - on, pos - neg);
                assert!(
                    (ours_margin - ref_margin).abs() < 0.25,
                    "{format:?}: label margin {ours_margin} vs llama.cpp {ref_margin}"
                );
                label_checked = true;
            }
        }
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    let median = diffs[diffs.len() / 2];
    let p90 = diffs[diffs.len() * 9 / 10];
    eprintln!("{format:?}: argmax agrees at {agree}/{total} positions; |Δ log P| over {} top-10 entries: median {median:.4}, p90 {p90:.4}, max {:.4}", diffs.len(), diffs[diffs.len() - 1]);
    assert!(
        label_checked,
        "the fixtures lack the sentiment text's label log-probs"
    );
    assert!(
        agree * 100 >= total * 95,
        "{format:?}: argmax agrees at only {agree}/{total} positions"
    );
    assert!(median <= 0.1, "{format:?}: median |Δ| {median} nats");
    assert!(p90 <= 0.3, "{format:?}: 90th percentile |Δ| {p90} nats");
}

#[test]
fn logprobs_match_llama_cpp_with_default_weights() {
    check_logprobs(WeightFormat::Bf16);
}

#[test]
fn logprobs_match_llama_cpp_with_native_quantised_weights() {
    check_logprobs(WeightFormat::Native);
}
