//! A `tokenizer.json` applies only to the model it belongs to: `<stem>.tokenizer.json` to
//! `<stem>.gguf` alone, a plain `tokenizer.json` only to the models of the folder whose
//! vocabulary it has (it used to apply to every GGUF in the folder, `--mutator-model` included).

use candle_core::Device;
use promptevo::model::tiny::{write_tiny_llama, TinyConfig};
use promptevo::model::{Model, WeightFormat};

/// The tiny model's own tokenizer as JSON.
fn own_json(model: &Model) -> serde_json::Value {
    serde_json::from_str(&model.tokenizer.to_string(false).unwrap()).unwrap()
}

#[test]
fn a_tokenizer_json_applies_only_to_the_model_it_belongs_to() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    write_tiny_llama(&a, &TinyConfig::default()).unwrap();
    write_tiny_llama(&b, &TinyConfig::default()).unwrap();
    let load = |p: &std::path::Path| Model::load(p, WeightFormat::Native, &Device::Cpu).unwrap();
    let plain = load(&a);
    let (upper, lower) = (plain.encode("THE").unwrap(), plain.encode("the").unwrap());
    assert_ne!(upper, lower);

    // a.tokenizer.json (a's vocabulary, lower-casing) is a's alone.
    let mut lowercasing = own_json(&plain);
    lowercasing["normalizer"] = serde_json::json!({"type": "Lowercase"});
    let own = dir.path().join("a.tokenizer.json");
    std::fs::write(&own, lowercasing.to_string()).unwrap();
    assert_eq!(load(&a).encode("THE").unwrap(), lower);
    assert_eq!(load(&b).encode("THE").unwrap(), upper);
    std::fs::remove_file(&own).unwrap();

    // A plain tokenizer.json of another vocabulary (two ids swapped) applies to neither ...
    let mut other = own_json(&plain);
    let vocab = other["model"]["vocab"].as_object_mut().unwrap();
    let (t, h) = (vocab["t"].clone(), vocab["h"].clone());
    vocab.insert("t".into(), h);
    vocab.insert("h".into(), t);
    other["normalizer"] = serde_json::json!({"type": "Lowercase"});
    let shared = dir.path().join("tokenizer.json");
    std::fs::write(&shared, other.to_string()).unwrap();
    for p in [&a, &b] {
        assert_eq!(load(p).encode("THE").unwrap(), upper, "{}", p.display());
    }
    // ... while one with their vocabulary applies to both, as before.
    std::fs::write(&shared, lowercasing.to_string()).unwrap();
    for p in [&a, &b] {
        assert_eq!(load(p).encode("THE").unwrap(), lower, "{}", p.display());
    }

    // A <stem>.tokenizer.json of another vocabulary is an error naming it and the fix.
    std::fs::write(&own, other.to_string()).unwrap();
    let err = Model::load(&a, WeightFormat::Native, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("a.tokenizer.json") && err.contains("remove it") && err.lines().count() == 1,
        "{err}"
    );
}
