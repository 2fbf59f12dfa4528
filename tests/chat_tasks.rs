//! Chat tasks (`format = "chat"`): bad chat task files, models without a chat template and the
//! server backend (which refuses chat tasks) are one clear line with exit code 2; on the real model, demonstrations become earlier chat turns,
//! prefix reuse gives the scores of whole-text scoring, `eval` runs sst2-chat, and a chat
//! search's `best.txt` given back to `eval --prompt` reproduces its test score.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::Device;
use common::{assert_bad_input, bin, default_model, root};
use promptevo::evolve::ChatMessage;
use promptevo::model::tiny::{write_tiny_llama, TinyConfig};
use promptevo::model::{ChatTemplate, Model, WeightFormat};
use promptevo::score::{EngineOptions, Scorer};
use promptevo::task::{Split, Task};

/// A chat task file in `dir` with extra `keys` (e.g. `user = "..."`).
fn write_chat_task(dir: &Path, keys: &str) -> PathBuf {
    std::fs::write(
        dir.join("data.jsonl"),
        "{\"input\": \"great\", \"target\": \"positive\"}\n{\"input\": \"awful\", \"target\": \"negative\"}\n",
    )
    .unwrap();
    let p = dir.join("chat.toml");
    std::fs::write(
        &p,
        format!("name = \"c\"\nkind = \"classification\"\nformat = \"chat\"\n{keys}\nlabels = [\"negative\", \"positive\"]\ninitial_prompts = [\"Is it positive?\"]\n[data]\ndev = \"data.jsonl\"\ntest = \"data.jsonl\"\n"),
    )
    .unwrap();
    p
}

fn eval_on(task: &Path, model: &Path) -> Output {
    bin()
        .args(["eval", "--task"])
        .arg(task)
        .arg("--model")
        .arg(model)
        .output()
        .unwrap()
}

#[test]
fn chat_task_without_input_in_user_is_one_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_chat_task(dir.path(), "user = \"Review: the text\"");
    let tiny = dir.path().join("tiny.gguf");
    write_tiny_llama(&tiny, &TinyConfig::default()).unwrap();
    assert_bad_input(
        &eval_on(&task, &tiny),
        &["chat.toml", "`user`", "add {input}"],
    );
}

#[test]
fn chat_task_on_a_model_without_a_chat_template_is_one_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_chat_task(dir.path(), "");
    // The tiny model carries no tokenizer.chat_template.
    let tiny = dir.path().join("tiny.gguf");
    write_tiny_llama(&tiny, &TinyConfig::default()).unwrap();
    assert_bad_input(
        &eval_on(&task, &tiny),
        &["tiny.gguf", "no chat template", "format = \"completion\""],
    );
}

/// A fake OpenAI-compatible server that lists one model and answers anything else with 404; its
/// base URL.
fn models_only_server() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { break };
            let mut first = String::new();
            let mut reader = BufReader::new(&mut stream);
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let (status, body) = if first.starts_with("GET /v1/models") {
                ("200 OK", r#"{"data": [{"id": "toy"}]}"#)
            } else {
                ("404 Not Found", r#"{"detail": "Not Found"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_server_that_publishes_no_chat_template_needs_one_named_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_chat_task(dir.path(), "");
    let url = models_only_server();
    let out = bin()
        .args(["eval", "--task"])
        .arg(&task)
        .args(["--model", &url])
        .output()
        .unwrap();
    assert_bad_input(
        &out,
        &[&url, "/props", "--chat-template", "format = \"completion\""],
    );
    // A template file that is not there is named, with what to give instead.
    let missing = dir.path().join("absent.gguf");
    let out = bin()
        .args(["eval", "--task"])
        .arg(&task)
        .args(["--model", &url, "--chat-template"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_bad_input(&out, &["absent.gguf", "no such file"]);
    // --chat-template is for a served model only.
    let out = bin()
        .args(["eval", "--task"])
        .arg(&task)
        .args(["--chat-template", "x.jinja"])
        .output()
        .unwrap();
    assert_bad_input(&out, &["--chat-template", "server URL"]);
}

fn real_model() -> Model {
    Model::load(&default_model(), WeightFormat::Native, &Device::Cpu).unwrap()
}

fn sst2_chat() -> Task {
    Task::load(&root().join("experiments/tasks/sst2-chat.toml")).unwrap()
}

#[test]
fn demos_in_a_chat_prompt_are_rendered_as_earlier_turns_of_the_model_template() {
    let model = real_model();
    let task = sst2_chat();
    let scorer = Scorer::new(&model, &task, EngineOptions::default()).unwrap();
    let instruction = &task.initial_prompts[0];
    let demos: Vec<String> = task.train[..2]
        .iter()
        .map(|e| task.demonstration(e))
        .collect();
    // As a genome renders a prompt with demonstrations (and best.txt holds it).
    let prompt = format!("{instruction}\n\n{}", demos.join("\n\n"));
    let input = &task.test[0].input;
    let mut messages = vec![ChatMessage::system(instruction.as_str())];
    for e in &task.train[..2] {
        messages.push(ChatMessage::user(e.input.as_str()));
        messages.push(ChatMessage::assistant(e.target.as_str()));
    }
    messages.push(ChatMessage::user(input.as_str()));
    let want = ChatTemplate::from_model(&model)
        .unwrap()
        .render(&messages, true)
        .unwrap();
    assert_eq!(scorer.render(&prompt, input).unwrap(), want);
    assert!(
        want.ends_with("<|im_end|>\n<|im_start|>assistant\n"),
        "{want}"
    );
    // The shared prefix is everything before the final user turn's input.
    let (before, after) = scorer.split(&prompt).unwrap();
    assert!(before.ends_with("<|im_start|>user\n"), "{before}");
    assert_eq!(after, "<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn chat_prefix_reuse_scores_as_whole_texts_do() {
    let model = real_model();
    let task = sst2_chat();
    let prompt = format!(
        "{}\n\n{}",
        task.initial_prompts[0],
        task.demonstration(&task.train[0])
    );
    let score = |prefix_reuse: bool| {
        let options = EngineOptions {
            batch_size: 4,
            prefix_reuse,
        };
        let mut scorer = Scorer::new(&model, &task, options).unwrap();
        let (lp, _) = scorer
            .label_logprobs(&prompt, Split::Test, Some(8))
            .unwrap();
        (lp, scorer.tokens_processed())
    };
    let (shared, shared_tokens) = score(true);
    let (whole, whole_tokens) = score(false);
    for (a, b) in shared.iter().flatten().zip(whole.iter().flatten()) {
        assert!((a - b).abs() < 2e-3, "{shared:?} vs {whole:?}");
    }
    // The system message and the demonstration turns (everything before the final user turn's
    // input) were run once for the 8 examples, not once each.
    let scorer = Scorer::new(&model, &task, EngineOptions::default()).unwrap();
    let (before, _) = scorer.split(&prompt).unwrap();
    let p = model.leading_ids().len() + model.encode(before.trim_end()).unwrap().len();
    assert!(p > 20, "{before:?}");
    assert_eq!(
        whole_tokens - shared_tokens,
        7 * p as u64,
        "{shared_tokens} tokens with prefix reuse, {whole_tokens} without, prefix {p}"
    );
}

fn eval_json(args: &[&str]) -> serde_json::Value {
    let out = bin()
        .current_dir(root())
        .args([
            "eval",
            "--json",
            "--task",
            "experiments/tasks/sst2-chat.toml",
        ])
        .args(args)
        .arg("--model")
        .arg(default_model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_of_sst2_chat_on_the_real_model() {
    let v = eval_json(&["--split", "test", "--limit", "32"]);
    assert_eq!(v["n"], 32);
    // 72% at test@400 (the first initial prompt as the system message): clearly above chance.
    assert!(v["accuracy"].as_f64().unwrap() >= 0.6, "{v}");
}

#[test]
fn best_txt_of_a_chat_search_given_to_eval_reproduces_its_test_score() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = bin()
        .current_dir(root())
        .args([
            "optimize",
            "--task",
            "experiments/tasks/sst2-chat.toml",
            "--population",
            "4",
            "--generations",
            "2",
            "--quiet",
            "--dev-limit",
            "12",
            "--test-limit",
            "16",
            "--validation-limit",
            "16",
            "--seed",
            "3",
            // Demonstration-heavy, so that candidates carry chat demonstrations.
            "--operators",
            "demo-set=20,demo-add=20",
            "--model",
        ])
        .arg(default_model())
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let best = std::fs::read_to_string(run.join("best.txt")).unwrap();
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    // As the shell's "$(cat best.txt)" gives it: trailing newlines dropped.
    let prompt = best.trim_end_matches('\n');
    let v = eval_json(&["--split", "test", "--limit", "16", "--prompt", prompt]);
    assert_eq!(
        v["accuracy"].as_f64(),
        result["best"]["test_accuracy"].as_f64(),
        "best.txt:\n{best}\nresult: {result}"
    );
    eprintln!("best.txt:\n{best}");
    // Every logged candidate with demonstrations (User:/Assistant: blocks, as best.txt would
    // hold them), given back to eval, predicts what the search logged for its dev examples.
    let log = std::fs::read_to_string(run.join("evaluations.jsonl")).unwrap();
    let with_demos: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["pool"] == "dev" && r["prompt"].as_str().unwrap().contains("\nAssistant: "))
        .take(2)
        .collect();
    assert!(
        !with_demos.is_empty(),
        "no candidate with demonstrations in {log}"
    );
    for r in with_demos {
        let v = eval_json(&[
            "--split",
            "dev",
            "--limit",
            "12",
            "--per-example",
            "--prompt",
            r["prompt"].as_str().unwrap(),
        ]);
        for logged in r["results"].as_array().unwrap() {
            let i = logged["example"].as_u64().unwrap() as usize;
            assert_eq!(
                v["examples"][i]["predicted"], logged["predicted"],
                "candidate {}, dev example {i}",
                r["id"]
            );
        }
    }
}

#[test]
fn a_chat_generation_task_decodes_the_assistant_turn_until_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("experiments/data/antonyms/test.jsonl");
    let p = dir.path().join("antonyms-chat.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"antonyms-chat\"\nkind = \"generation\"\nformat = \"chat\"\nuser = \"Word: {{input}}\"\nmax_new_tokens = 12\ninitial_prompts = [\"Write the opposite of the word. Answer with one word.\"]\n[data]\ndev = {data:?}\ntest = {data:?}\n"
        ),
    )
    .unwrap();
    let task = Task::load(&p).unwrap();
    let spec = task.generation().cloned().unwrap();
    assert!(
        spec.stop.is_empty(),
        "chat answers end at the end-of-turn token"
    );
    let model = real_model();
    let mut scorer = Scorer::new(&model, &task, EngineOptions::default()).unwrap();
    let (outputs, computed) = scorer
        .answers(&task.initial_prompts[0], Split::Test, Some(6), &spec)
        .unwrap();
    assert_eq!((outputs.len(), computed), (6, 6));
    // The end-of-turn token ends an answer and is not part of it; some answers end before
    // max_new_tokens (a one-word answer is a few tokens).
    assert!(outputs.iter().all(|o| !o.contains("<|im")), "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|o| !o.is_empty() && model.encode(o).unwrap().len() < 12),
        "{outputs:?}"
    );
}
