//! Chat tasks agree with llama.cpp: `tests/reference/chat.json` (made by
//! `tests/reference/make_chat_fixtures.py` with llama-cpp-python from the same GGUF) holds chats
//! rendered by Jinja2 from the model's own chat template, llama.cpp's token ids for them (special
//! tokens parsed as special) and its log-probs. Our rendering (through the task's chat format and
//! the model's template, demonstrations as turns) must give the same text and the same ids; label
//! decisions on SST-2 test@200 must agree on at least 97% of the examples, and next-token
//! log-probs within the bounds `tests/reference.rs` uses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use promptevo::model::{Model, WeightFormat};
use promptevo::score::{Engine, EngineOptions, LocalBackend, Scorer, ScoringBackend};
use promptevo::task::{ChatFormat, Split, Task};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    labels: Vec<String>,
    label_ids: BTreeMap<String, Vec<u32>>,
    prompt: String,
    sst2: Vec<Sst2Chat>,
    texts: Vec<ChatText>,
}

#[derive(Deserialize)]
struct Sst2Chat {
    input: String,
    text: String,
    ids: Vec<u32>,
    label_logprobs: Vec<f32>,
}

#[derive(Deserialize)]
struct ChatText {
    system: String,
    user: String,
    prompt: String,
    input: String,
    text: String,
    ids: Vec<u32>,
    label_logprobs: Vec<f32>,
    positions: Vec<Position>,
}

#[derive(Deserialize)]
struct Position {
    pos: usize,
    argmax: u32,
    top: Vec<(u32, f32)>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Fixture {
    let p = root().join("tests/reference/chat.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn load(format: WeightFormat) -> Model {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "the default model is missing: run ./models/fetch-default.sh first"
    );
    Model::load(&p, format, &Device::Cpu).unwrap()
}

fn sst2_chat() -> Task {
    Task::load(&root().join("experiments/tasks/sst2-chat.toml")).unwrap()
}

/// The ids the engine runs for `text` (BOS first when the model asks for it).
fn ids_of(model: &Model, text: &str) -> Vec<u32> {
    let mut ids = model.leading_ids();
    ids.extend(model.encode(text).unwrap());
    ids
}

#[test]
fn chat_renderings_and_token_ids_match_llama_cpps() {
    let model = load(WeightFormat::Native);
    let fx = fixture();
    let task = sst2_chat();
    assert_eq!(fx.prompt, task.initial_prompts[0]);
    assert_eq!(fx.labels, task.verbalizers());
    for (label, want) in &fx.label_ids {
        assert_eq!(&model.encode(label).unwrap(), want, "label {label:?}");
    }
    let scorer = Scorer::new(&model, &task, EngineOptions::default()).unwrap();
    assert_eq!(fx.sst2.len(), 200);
    for (case, ex) in fx.sst2.iter().zip(&task.test) {
        assert_eq!(case.input, ex.input);
        let text = scorer.render(&fx.prompt, &case.input).unwrap();
        assert_eq!(text, case.text);
        assert_eq!(ids_of(&model, &text), case.ids, "{text:?}");
    }
    // Demonstrations as earlier turns, and the prompt in the user message with no system one.
    let renderer = LocalBackend::new(&model, EngineOptions::default())
        .chat_renderer()
        .unwrap();
    for t in &fx.texts {
        let format = ChatFormat::new(Some(&t.system), Some(&t.user)).unwrap();
        let text = renderer.render(&format, &t.prompt, &t.input).unwrap();
        assert_eq!(text, t.text);
        assert_eq!(ids_of(&model, &text), t.ids, "{text:?}");
    }
}

/// Label decisions of the chat-rendered SST-2 test@200 through the scorer (shared prefix,
/// batches) against llama.cpp's on the same renderings. Run with the CLI's default bf16 weights
/// (native weights, measured once, are slower here and agree as well).
///
/// Measured 2026-12-03 (llama-cpp-python 0.3.36): decisions agree on 194/200 with bf16 and with
/// native weights; every disagreement is a near tie (llama.cpp's margin at most 0.13 nats);
/// |Δ| over label log-probs and margins: median 0.10, p90 0.27 (bf16) / 0.31 (native), max
/// 0.56 / 0.71. The labels start the assistant's turn at 5-10 nats below its likeliest token,
/// where Q4_1 and llama.cpp's Q8_1 activations differ more than at the top (`tests/reference.rs`
/// bounds the top-10 entries, median 0.07); so p90 is bounded at 0.35 here, and a different
/// decision must be a tie within 0.3 nats.
fn check_sst2_decisions(format: WeightFormat) {
    let model = load(format);
    let fx = fixture();
    let task = sst2_chat();
    let mut scorer = Scorer::new(&model, &task, EngineOptions::default()).unwrap();
    let (ours, _) = scorer
        .label_logprobs(&fx.prompt, Split::Test, Some(200))
        .unwrap();
    let decide = |lp: &[f32]| usize::from(lp[1] > lp[0]);
    let mut agree = 0;
    let mut diffs = Vec::new();
    for (i, (o, case)) in ours.iter().zip(&fx.sst2).enumerate() {
        let want = &case.label_logprobs;
        if decide(o) == decide(want) {
            agree += 1;
        } else {
            // A disagreement must be a near tie, within the arithmetic noise measured below.
            let margin = want[1] - want[0];
            eprintln!(
                "{format:?}: example {i} decided differently: ours {o:?}, llama.cpp {want:?}"
            );
            assert!(
                margin.abs() < 0.3,
                "{format:?}: example {i}: llama.cpp's margin {margin} is no tie, ours {o:?}"
            );
        }
        diffs.push(((o[1] - o[0]) - (case.label_logprobs[1] - case.label_logprobs[0])).abs());
        for (a, b) in o.iter().zip(&case.label_logprobs) {
            diffs.push((a - b).abs());
        }
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    let (median, p90) = (diffs[diffs.len() / 2], diffs[diffs.len() * 9 / 10]);
    eprintln!(
        "{format:?}: decisions agree on {agree}/200; |Δ| of label log-probs and margins: median {median:.4}, p90 {p90:.4}, max {:.4}",
        diffs[diffs.len() - 1]
    );
    assert!(
        agree * 100 >= 200 * 97,
        "{format:?}: decisions agree on only {agree}/200"
    );
    assert!(median <= 0.1, "{format:?}: median |Δ| {median} nats");
    assert!(p90 <= 0.35, "{format:?}: 90th percentile |Δ| {p90} nats");
}

#[test]
fn chat_label_decisions_agree_with_llama_cpp_on_sst2_test_200_with_default_weights() {
    check_sst2_decisions(WeightFormat::Bf16);
}

/// Next-token log-probs at every position of the few chats (top-10 entries), and their label
/// log-probs through the engine, as `tests/reference.rs` bounds them.
fn check_chat_logprobs(format: WeightFormat) {
    let model = load(format);
    let fx = fixture();
    let label_ids: Vec<Vec<u32>> = fx.labels.iter().map(|l| fx.label_ids[l].clone()).collect();
    let renderer = LocalBackend::new(&model, EngineOptions::default())
        .chat_renderer()
        .unwrap();
    let mut engine = Engine::new(&model, EngineOptions::default());
    let (mut diffs, mut agree, mut total) = (Vec::new(), 0usize, 0usize);
    for t in &fx.texts {
        let rows = model.arch.causal_log_probs(&t.ids).unwrap();
        for p in &t.positions {
            let row = &rows[p.pos];
            let argmax = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0) as u32;
            total += 1;
            agree += usize::from(argmax == p.argmax);
            diffs.extend(
                p.top
                    .iter()
                    .map(|&(id, want)| (row[id as usize] - want).abs()),
            );
        }
        let chat = ChatFormat::new(Some(&t.system), Some(&t.user)).unwrap();
        let (before, after) = renderer.split(&chat, &t.prompt).unwrap();
        let ours = engine
            .score(&before, &[format!("{}{after}", t.input)], &label_ids)
            .unwrap();
        let (o, want) = (&ours[0], &t.label_logprobs);
        assert_eq!(
            o[1] > o[0],
            want[1] > want[0],
            "{format:?}: {o:?} vs {want:?}"
        );
        // One text's margin: the SST-2 chats above put the 90th percentile of |Δ| near 0.3 and
        // the largest near 0.6 (bf16 weights against llama.cpp's Q8_1 activations).
        assert!(
            ((o[1] - o[0]) - (want[1] - want[0])).abs() < 0.6,
            "{format:?}: label margin {o:?} vs llama.cpp {want:?}"
        );
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    let (median, p90) = (diffs[diffs.len() / 2], diffs[diffs.len() * 9 / 10]);
    eprintln!(
        "{format:?}: argmax agrees at {agree}/{total} positions; |Δ log P| over {} top-10 entries: median {median:.4}, p90 {p90:.4}, max {:.4}",
        diffs.len(),
        diffs[diffs.len() - 1]
    );
    assert!(
        agree * 100 >= total * 95,
        "{format:?}: argmax agrees at only {agree}/{total}"
    );
    assert!(median <= 0.1, "{format:?}: median |Δ| {median} nats");
    assert!(p90 <= 0.3, "{format:?}: 90th percentile |Δ| {p90} nats");
}

#[test]
fn chat_logprobs_match_llama_cpp_with_default_weights() {
    check_chat_logprobs(WeightFormat::Bf16);
}

#[test]
fn chat_logprobs_match_llama_cpp_with_native_quantised_weights() {
    check_chat_logprobs(WeightFormat::Native);
}
