//! A generation task scored end to end on the real default model: answers are decoded greedily
//! after the shared prompt prefix, scored with the task's metric, cached, and independent of how
//! the work was split (prefix reuse on or off, a fresh scorer or the cache). The generation path
//! decodes one example at a time, so `EngineOptions::batch_size` is not varied here: it does not
//! reach this path, and a test varying it could not fail.

mod common;

use candle_core::Device;
use promptevo::model::{Model, WeightFormat};
use promptevo::score::{EngineOptions, Scorer};
use promptevo::task::{Split, Task};

#[test]
fn antonyms_slice_scores_in_range_deterministically_and_ranks_a_good_prompt_first() {
    let model = Model::load(&common::default_model(), WeightFormat::Bf16, &Device::Cpu).unwrap();
    let task = Task::load(&common::root().join("experiments/tasks/antonyms.toml")).unwrap();
    assert!(task.is_generation());
    let good = task.initial_prompts[0].clone();
    let mut scorer = Scorer::new(&model, &task, EngineOptions::default()).unwrap();
    let ev = scorer
        .evaluate(&good, Split::Test, Some(10), false)
        .unwrap();
    assert_eq!((ev.n, ev.per_example.len(), ev.outputs.len()), (10, 10, 10));
    assert!((0.0..=1.0).contains(&ev.accuracy), "{}", ev.accuracy);
    assert!(ev.predictions.is_empty());
    let non_empty = ev.outputs.iter().filter(|o| !o.trim().is_empty()).count();
    assert!(non_empty >= 7, "{:?}", ev.outputs);
    assert!(
        ev.outputs.iter().all(|o| !o.contains('\n')),
        "{:?}",
        ev.outputs
    );
    assert_eq!(ev.forward_passes, 10);
    assert_eq!(scorer.forward_passes(), 10);

    // Cached: a second evaluation runs nothing and agrees.
    let again = scorer
        .evaluate(&good, Split::Test, Some(10), false)
        .unwrap();
    assert_eq!(again.forward_passes, 0);
    assert_eq!(scorer.forward_passes(), 10);
    assert_eq!((again.accuracy, &again.outputs), (ev.accuracy, &ev.outputs));

    // Recomputed by fresh scorers (nothing cached), without and with the shared prefix: the
    // same answers.
    for options in [
        EngineOptions {
            prefix_reuse: false,
            ..EngineOptions::default()
        },
        EngineOptions::default(),
    ] {
        let mut other = Scorer::new(&model, &task, options).unwrap();
        let ev2 = other.evaluate(&good, Split::Test, Some(10), false).unwrap();
        assert_eq!(ev2.outputs, ev.outputs, "{options:?}");
        assert_eq!(ev2.per_example, ev.per_example, "{options:?}");
    }

    // A nonsense instruction does worse than the reference one.
    let nonsense = scorer
        .evaluate("Banana helicopter purple.", Split::Test, Some(10), false)
        .unwrap();
    assert!(
        ev.accuracy > nonsense.accuracy,
        "good {} vs nonsense {}: {:?} / {:?}",
        ev.accuracy,
        nonsense.accuracy,
        ev.outputs,
        nonsense.outputs
    );
}
