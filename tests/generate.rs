//! Generation on the real default model: the chat template renders exactly as the model was
//! trained, greedy decoding equals repeated argmax of a plain causal pass, sampling is a function
//! of the seed, stop strings cut, and a chat reply is produced.

mod common;

use std::time::Instant;

use candle_core::Device;
use promptevo::evolve::{ChatMessage, TextGenerator};
use promptevo::model::generate::argmax;
use promptevo::model::{
    ChatGenerator, ChatTemplate, GenerateOptions, Generator, Model, WeightFormat,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn model() -> Model {
    Model::load(&common::default_model(), WeightFormat::Bf16, &Device::Cpu).unwrap()
}

#[test]
fn chat_template_renders_chatml_exactly() {
    let m = model();
    let t = ChatTemplate::from_model(&m).unwrap();
    let text = t
        .render(
            &[
                ChatMessage::system("Be brief."),
                ChatMessage::user("Hi there"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
    let g = Generator::new(&m);
    let im_end = m.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert!(g.stop_ids().contains(&im_end), "{:?}", g.stop_ids());
}

#[test]
fn greedy_generation_equals_repeated_argmax_of_a_causal_pass() {
    let m = model();
    let prompt = "The capital of France is";
    let mut g = Generator::new(&m);
    let opts = GenerateOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let out = g.generate(prompt, &opts, None).unwrap();
    let mut ids = m.leading_ids();
    ids.extend(m.encode(prompt).unwrap());
    let n = ids.len();
    for _ in 0..8 {
        let logp = m.arch.causal_log_probs(&ids).unwrap();
        let next = argmax(logp.last().unwrap());
        if g.stop_ids().contains(&next) {
            break;
        }
        ids.push(next);
    }
    assert_eq!(out.text, m.decode(&ids[n..]).unwrap());
    assert!(!out.text.is_empty());
}

#[test]
fn seeded_sampling_is_reproducible_and_depends_on_the_seed() {
    let m = model();
    let mut g = Generator::new(&m);
    let opts = GenerateOptions {
        max_new_tokens: 10,
        temperature: 1.0,
        top_p: 0.95,
        stop: vec![],
    };
    let prompt = "Once upon a time";
    let run = |g: &mut Generator, seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        g.generate(prompt, &opts, Some(&mut rng)).unwrap().text
    };
    let texts: Vec<String> = (0..3).map(|s| run(&mut g, s)).collect();
    assert_eq!(run(&mut g, 0), texts[0]);
    assert!(
        texts[1..].iter().any(|t| *t != texts[0]),
        "three seeds gave the same text: {texts:?}"
    );
}

#[test]
fn stop_string_cuts_the_output() {
    let m = model();
    let mut g = Generator::new(&m);
    let prompt = "1, 2, 3, 4, 5,";
    let free = g
        .generate(
            prompt,
            &GenerateOptions {
                max_new_tokens: 8,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert!(free.text.contains(','), "{:?}", free.text);
    let cut = g
        .generate(
            prompt,
            &GenerateOptions {
                max_new_tokens: 8,
                stop: vec![",".into()],
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert!(!cut.text.contains(','), "{:?}", cut.text);
    assert!(free.text.starts_with(&cut.text));
    assert_eq!(cut.text, free.text[..free.text.find(',').unwrap()]);
}

#[test]
fn chat_reply_to_an_instruction_request_is_not_empty() {
    let m = model();
    let mut chat = ChatGenerator::new(
        &m,
        GenerateOptions {
            max_new_tokens: 32,
            temperature: 0.7,
            top_p: 0.9,
            stop: vec![],
        },
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let start = Instant::now();
    let reply = chat
        .chat(
            &[ChatMessage::user(
                "Write one short instruction for classifying movie reviews as positive or negative.",
            )],
            &mut rng,
        )
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let n = chat.tokens_generated();
    eprintln!(
        "reply ({n} tokens in {secs:.2} s, {:.1} tokens/s incl. prefill): {reply:?}",
        n as f64 / secs
    );
    assert!(!reply.trim().is_empty());
    assert!(!reply.contains("<|im_end|>"));
    assert!(n > 0);
}

/// Prompts after a shared prefix that stop for different reasons at different lengths (end of
/// turn, a stop string, the token budget), so rows leave the batch and waiting ones join.
fn batched_suffixes(m: &Model, prefix: &str) -> (Vec<u32>, Vec<Vec<u32>>) {
    let inputs = [
        "cat, elephant",
        "mouse, horse",
        "the blue whale or a small brown sparrow that sits on a fence",
        "ant, dog",
        "1, 2, 3, 4, 5,",
        "Write a long story about a dragon.",
        "hi",
        "lion, zebra, giraffe, hippo, rhino, buffalo, antelope",
    ];
    let mut prefix_ids = m.leading_ids();
    prefix_ids.extend(m.encode(prefix.trim_end()).unwrap());
    let suffixes = inputs
        .iter()
        .map(|input| {
            let mut ids = m.leading_ids();
            ids.extend(m.encode(&format!("{prefix}{input}\nOutput:")).unwrap());
            assert!(ids.starts_with(&prefix_ids), "{input}");
            ids[prefix_ids.len()..].to_vec()
        })
        .collect();
    (prefix_ids, suffixes)
}

#[test]
fn batched_greedy_generation_gives_the_tokens_of_one_at_a_time() {
    let m = model();
    let mut g = Generator::new(&m);
    assert!(g.batches());
    let (prefix_ids, suffixes) =
        batched_suffixes(&m, "Name the larger of the two animals.\n\nInput: ");
    let mut prefix = m.arch.new_cache();
    g.prefill(&mut prefix, &prefix_ids).unwrap();
    for opts in [
        GenerateOptions {
            max_new_tokens: 12,
            stop: vec!["\n".into()],
            ..Default::default()
        },
        GenerateOptions {
            max_new_tokens: 20,
            stop: vec![".".into()],
            ..Default::default()
        },
    ] {
        let alone: Vec<_> = suffixes
            .iter()
            .map(|ids| {
                let mut cache = prefix.clone();
                g.generate_after(&mut cache, ids, &opts, None).unwrap()
            })
            .collect();
        let reasons: std::collections::HashSet<_> = alone.iter().map(|a| a.stop_reason).collect();
        assert!(
            reasons.len() >= 2,
            "the rows should stop for different reasons: {alone:?}"
        );
        // 3 rows at a time: rows join as others leave; 64: all at once.
        for rows in [3, 64] {
            let batched = g.generate_batch(&prefix, &suffixes, &opts, rows).unwrap();
            assert_eq!(batched, alone, "rows {rows}");
        }
        // No shared prefix: each row is its whole prompt.
        let whole: Vec<Vec<u32>> = suffixes
            .iter()
            .map(|s| [prefix_ids.as_slice(), s].concat())
            .collect();
        let batched = g
            .generate_batch(&m.arch.new_cache(), &whole, &opts, 4)
            .unwrap();
        for (b, a) in batched.iter().zip(&alone) {
            assert_eq!(b.text, a.text);
            assert_eq!(b.stop_reason, a.stop_reason);
        }
    }
    // Sampling is not batched: an error, not a silent greedy answer.
    let sampled = GenerateOptions {
        temperature: 1.0,
        ..Default::default()
    };
    assert!(g.generate_batch(&prefix, &suffixes, &sampled, 4).is_err());
}
