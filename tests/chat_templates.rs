//! Chat templates are untrusted code from a downloaded GGUF: hostile ones, written into a tiny
//! model, end in a one-line error (an endless loop, exponential work, a huge output, deep
//! recursion, a string doubled until memory runs out), and nothing in a template reaches the file
//! system or the environment.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use promptevo::evolve::ChatMessage;
use promptevo::model::tiny::{write_tiny_llama, TinyConfig};
use promptevo::model::{ChatTemplate, Model, WeightFormat};

fn model_with(dir: &Path, template: &str) -> PathBuf {
    let p = dir.join("hostile.gguf");
    write_tiny_llama(
        &p,
        &TinyConfig {
            layers: 1,
            chat_template: Some(template.into()),
            ..Default::default()
        },
    )
    .unwrap();
    p
}

/// Renders `template` from a tiny GGUF; returns the error line (and prints the time taken).
fn render_error(template: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = model_with(dir.path(), template);
    let model = Model::load(&p, WeightFormat::Bf16, &Device::Cpu).unwrap();
    let t = ChatTemplate::from_model(&model).unwrap();
    let started = Instant::now();
    let err = t
        .render(&[ChatMessage::user("Hi")], true)
        .expect_err("a hostile template rendered")
        .to_string();
    eprintln!("{:.3} s: {err}", started.elapsed().as_secs_f64());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("hostile.gguf"), "{err}");
    err
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    // 10^15 iterations: endless for any purpose.
    let err = render_error(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
    );
    assert!(err.contains("instructions"), "{err}");
}

#[test]
fn exponential_recursion_runs_out_of_fuel() {
    // 100^4 calls, nested only 4 deep (within the recursion limit).
    let err = render_error(
        "{% macro f(n) %}{% if n > 0 %}{% for i in range(100) %}{{ f(n - 1) }}{% endfor %}{% endif %}{% endmacro %}{{ f(4) }}",
    );
    assert!(err.contains("instructions"), "{err}");
}

#[test]
fn deep_recursion_hits_the_recursion_limit() {
    let err = render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    assert!(err.contains("nests more than"), "{err}");
}

#[test]
fn a_huge_output_hits_the_output_limit() {
    let err = render_error("{% for a in range(100000) %}{{ 'x' * 100000 }}{% endfor %}");
    assert!(err.contains("output passed"), "{err}");
}

#[test]
fn nothing_in_a_template_reaches_files_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, "file-secret-5f3a").unwrap();
    let path = secret_file.display().to_string();
    // Each probe is rendered alone: a probe that errors must not hide another that leaks.
    let probes = [
        format!("{{% include '{path}' %}}"),
        format!("{{% import '{path}' as x %}}{{{{ x }}}}"),
        format!("{{% extends '{path}' %}}"),
        format!("{{% from '{path}' import y %}}"),
        "{{ env }}{{ environ }}{{ os }}{{ config }}{{ request }}{{ self }}".into(),
        "{{ ''.__class__ }}{{ ''.__class__.__mro__ }}{{ cycler.__init__.__globals__ }}".into(),
        "{{ lipsum.__globals__ }}{{ range.__globals__ }}{{ namespace.__init__ }}".into(),
        "{{ messages.__class__ }}{{ raise_exception.__globals__ }}".into(),
        "{{ 'PROMPTEVO_TEMPLATE_SECRET' | env }}{{ getenv('PROMPTEVO_TEMPLATE_SECRET') }}".into(),
        format!("{{{{ open('{path}').read() }}}}{{{{ '{path}' | read }}}}"),
    ];
    std::env::set_var("PROMPTEVO_TEMPLATE_SECRET", "env-secret-91c2");
    for probe in &probes {
        let p = model_with(dir.path(), probe);
        let model = Model::load(&p, WeightFormat::Bf16, &Device::Cpu).unwrap();
        let shown = match ChatTemplate::from_model(&model) {
            Err(e) => e.to_string(),
            Ok(t) => match t.render(&[ChatMessage::user("Hi")], true) {
                Ok(text) => text,
                Err(e) => e.to_string(),
            },
        };
        assert!(
            !shown.contains("file-secret") && !shown.contains("env-secret"),
            "{probe} leaked: {shown}"
        );
        assert_eq!(shown.lines().count().max(1), 1, "{probe}: {shown}");
    }
}

#[test]
fn a_string_doubled_past_the_memory_budget_stops_the_binary_with_one_line() {
    // Forty doublings of a 100 MB string: fuel cannot see it (a few hundred instructions).
    let dir = tempfile::tempdir().unwrap();
    let model = model_with(
        dir.path(),
        "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    );
    std::fs::write(
        dir.path().join("g.jsonl"),
        "{\"input\": \"hot\", \"target\": \"cold\"}\n",
    )
    .unwrap();
    let task = dir.path().join("g.toml");
    std::fs::write(
        &task,
        "name = \"g\"\nkind = \"generation\"\ntemplate = \"{prompt}\\nInput: {input}\\nOutput:\"\ninitial_prompts = [\"Opposite.\"]\n[data]\ndev = \"g.jsonl\"\ntest = \"g.jsonl\"\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = common::bin()
        .args(["eval", "--task"])
        .arg(&task)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{:.3} s: {err}", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("hostile.gguf") && lines[0].contains("allocated more than 256 MiB"),
        "{err}"
    );
}

#[test]
fn an_ordinary_chat_template_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let p = model_with(
        dir.path(),
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    );
    let model = Model::load(&p, WeightFormat::Bf16, &Device::Cpu).unwrap();
    let t = ChatTemplate::from_model(&model).unwrap();
    let text = t.render(&[ChatMessage::user(" Hi ")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}
