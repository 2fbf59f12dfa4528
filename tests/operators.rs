//! Model-driven operators on the real default model: each one, applied to a fixed prompt with a
//! fixed seed, gives the same child every time (generation is seeded), and most of them turn the
//! model's reply into a usable prompt.

mod common;

use candle_core::Device;
use promptevo::evolve::{operator_by_name, Genome, OperatorContext, TrainExample, TrainPool};
use promptevo::model::{ChatGenerator, GenerateOptions, Model, WeightFormat};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const MODEL_OPERATORS: [&str; 8] = [
    "paraphrase",
    "evo-ga",
    "evo-de",
    "pb-first-order",
    "pb-zero-order",
    "pb-hypermutation",
    "pb-lineage",
    "pb-lamarckian",
];

fn apply_all(model: &Model, seed: u64) -> Vec<Option<Genome>> {
    let options = GenerateOptions {
        max_new_tokens: 48,
        temperature: 0.8,
        top_p: 0.95,
        stop: Vec::new(),
    };
    let mut generator = ChatGenerator::new(model, options).expect("SmolLM2 can chat");
    let parent =
        Genome::parse("Given a sentence, classify it as either positive or negative sentiment.");
    let donor1 = Genome::parse("Is the sentiment of this movie review positive or negative?");
    let donor2 =
        Genome::parse("Determine the sentiment of the text provided, positive or negative.");
    let pairs = [
        ("a gorgeous , witty , seductive movie .", "positive"),
        ("the story is too thin to hold interest .", "negative"),
    ];
    let train = TrainPool::new(
        pairs
            .iter()
            .map(|(input, target)| TrainExample {
                input: input.to_string(),
                target: target.to_string(),
                demonstration: format!("Review: {input}\nSentiment: {target}"),
            })
            .collect(),
        pairs.len(),
    );
    let mut ctx = OperatorContext {
        generator: Some(&mut generator),
        task_description: "Binary sentiment of movie-review sentences.".into(),
        best: vec![donor2.clone(), donor1.clone()],
        train: &train,
        ..OperatorContext::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    MODEL_OPERATORS
        .iter()
        .map(|name| {
            let op = operator_by_name(name).expect("known operator");
            assert!(op.needs_model(), "{name}");
            let parents: Vec<&Genome> = [&parent, &donor1, &donor2][..op.arity()].to_vec();
            op.apply(&parents, &mut ctx, &mut rng)
                .expect("generation works")
        })
        .collect()
}

#[test]
fn model_operators_are_seeded_and_mostly_produce_prompts() {
    let model = Model::load(&common::default_model(), WeightFormat::Bf16, &Device::Cpu).unwrap();
    let first = apply_all(&model, 0);
    let again = apply_all(&model, 0);
    assert_eq!(first, again, "same seed, same children");
    for (name, child) in MODEL_OPERATORS.iter().zip(&first) {
        eprintln!("{name:>17}: {:?}", child.as_ref().map(Genome::instruction));
        if let Some(g) = child {
            let text = g.instruction();
            assert!(
                !text.is_empty() && text.chars().count() <= 400,
                "{name}: {text:?}"
            );
            assert!(
                !text.contains("<|") && !text.contains("{input}"),
                "{name}: {text:?}"
            );
        }
    }
    let made = first.iter().filter(|c| c.is_some()).count();
    assert!(
        made >= 5,
        "only {made} of 8 model operators produced a prompt"
    );
    let other = apply_all(&model, 1);
    assert_ne!(first, other, "another seed samples other text");
}
