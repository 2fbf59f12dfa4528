//! A seeded mutation fuzzer on stable Rust over everything a user feeds promptevo: GGUF files
//! (header, metadata types, counts and string lengths, tensor dims, types and offsets,
//! truncations, bit flips), task TOML and JSONL, `tokenizer.json`, and a run folder's
//! `evaluations.jsonl`, `checkpoint.json` and `config.json` for `resume`.
//!
//! Every case must end in a clean error or a success: no panic (caught and reported with the
//! case's seed), no abort, no hang (a watchdog aborts with the case named), and no allocation
//! beyond what the input's real size justifies (the allocator below aborts, naming the size, on
//! any single allocation over a limit set from the case's file size).
//!
//! `cargo test --release --test fuzz` runs a fixed number of cases per target (3,000 GGUF, 3,000
//! task, 1,000 tokenizer.json, 60 resume; a few seconds); `PROMPTEVO_FUZZ_CASES=N` runs N per
//! target instead (N/20 for resume, a process each), `PROMPTEVO_FUZZ_SEED=S` another seed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::Device;
use promptevo::model::tiny::{write_tiny_llama, TinyConfig};
use promptevo::model::{ChatTemplate, Model, WeightFormat};
use promptevo::score::{EngineOptions, Scorer};
use promptevo::task::{Split, Task};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Allocation limit and watchdog.

/// Largest single allocation allowed while a case runs (0: no limit).
static ALLOC_LIMIT: AtomicUsize = AtomicUsize::new(0);
/// Seed of the case that set the limit (named when the allocator aborts).
static CURRENT_SEED: AtomicU64 = AtomicU64::new(0);

/// Aborts, naming the size, on an allocation over [`ALLOC_LIMIT`].
struct Guarded;

unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn check(size: usize) {
    let limit = ALLOC_LIMIT.load(Ordering::Relaxed);
    if limit != 0 && size > limit {
        // No allocation here: format the size into a stack buffer.
        let mut buf = [0u8; 128];
        let msg = b"fuzz: allocation beyond the input's size: ";
        buf[..msg.len()].copy_from_slice(msg);
        let mut n = msg.len();
        let digits = size.to_string_stackless();
        buf[n..n + digits.1].copy_from_slice(&digits.0[..digits.1]);
        n += digits.1;
        let at = b" bytes, case seed ";
        buf[n..n + at.len()].copy_from_slice(at);
        n += at.len();
        let seed = (CURRENT_SEED.load(Ordering::Relaxed) as usize).to_string_stackless();
        buf[n..n + seed.1].copy_from_slice(&seed.0[..seed.1]);
        n += seed.1;
        buf[n] = b'\n';
        let _ = std::io::stderr().write_all(&buf[..=n]);
        std::process::abort();
    }
}

trait Stackless {
    fn to_string_stackless(self) -> ([u8; 24], usize);
}

impl Stackless for usize {
    fn to_string_stackless(self) -> ([u8; 24], usize) {
        let mut out = [0u8; 24];
        let mut tmp = [0u8; 24];
        let (mut v, mut len) = (self, 0);
        loop {
            tmp[len] = b'0' + (v % 10) as u8;
            len += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in 0..len {
            out[i] = tmp[len - 1 - i];
        }
        (out, len)
    }
}

#[global_allocator]
static GLOBAL: Guarded = Guarded;

/// Seconds a case may take before the watchdog aborts the run.
const CASE_SECONDS: u64 = 30;

/// The case now running (target and seed) and when it started, for the watchdog.
static RUNNING: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
static CASES_RUN: AtomicU64 = AtomicU64::new(0);

fn watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            for (case, t) in running.iter() {
                if t.elapsed() > Duration::from_secs(CASE_SECONDS) {
                    eprintln!("fuzz: {case} hangs (over {CASE_SECONDS} s)");
                    std::process::abort();
                }
            }
        });
    });
}

/// Runs one case: catches a panic, bounds its allocations by `limit` bytes, watches its time.
/// Returns the panic message, if it panicked.
fn run_case(target: &str, seed: u64, limit: usize, f: impl FnOnce()) -> Option<String> {
    watchdog();
    let name = format!("{target} seed {seed}");
    CURRENT_SEED.store(seed, Ordering::Relaxed);
    RUNNING.lock().unwrap().push((name.clone(), Instant::now()));
    let prev = ALLOC_LIMIT.swap(limit, Ordering::SeqCst);
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    ALLOC_LIMIT.store(prev, Ordering::SeqCst);
    RUNNING.lock().unwrap().retain(|(n, _)| *n != name);
    CASES_RUN.fetch_add(1, Ordering::Relaxed);
    r.err().map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// Cases per target: the default, or `PROMPTEVO_FUZZ_CASES`.
fn cases(default: u64) -> u64 {
    std::env::var("PROMPTEVO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn base_seed() -> u64 {
    std::env::var("PROMPTEVO_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14)
}

/// Allocation bound for an input of `len` bytes: the parsed form may take a few times the
/// file (tensors are widened to f32, packed, tokenizers build maps), plus a fixed allowance.
fn limit_for(len: usize) -> usize {
    64 * 1024 * 1024 + 16 * len
}

/// Fails the test with every finding (target, seed, message).
fn report(target: &str, n: u64, started: Instant, findings: &[String]) {
    eprintln!(
        "fuzz {target}: {n} cases in {:.1} s, {} findings",
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "{target}: {} cases panicked:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Generic byte mutations.

/// Values that break size arithmetic.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    7,
    31,
    255,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    (1 << 42) + 1,
    1 << 60,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX,
];

fn flip_bits(bytes: &mut [u8], rng: &mut ChaCha8Rng, within: usize) {
    if bytes.is_empty() {
        return;
    }
    for _ in 0..rng.gen_range(1..=8) {
        let i = rng.gen_range(0..within.clamp(1, bytes.len()));
        bytes[i] ^= 1 << rng.gen_range(0..8);
    }
}

/// A mutation of a text-ish file: bit flips, truncation, deleted or repeated spans, or inserted
/// tokens that matter to TOML and JSON parsers.
fn mutate_text(src: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    const TOKENS: [&[u8]; 22] = [
        b"\"",
        b"\\",
        b"[",
        b"]",
        b"{",
        b"}",
        b"\n",
        b"=",
        b",",
        b":",
        b"\xff",
        b"\xc3",
        b"\0",
        b"1e999",
        b"-1",
        b"18446744073709551616",
        b"nan",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        b"null",
        b"\"\"\"",
        b"[data]\n",
        b"{\"input\": \"x\", \"target\": 7}",
    ];
    let mut b = src.to_vec();
    for _ in 0..rng.gen_range(1..=3) {
        let len = b.len().max(1);
        match rng.gen_range(0..6) {
            0 => flip_bits(&mut b, rng, len),
            1 => b.truncate(rng.gen_range(0..len)),
            2 => {
                let i = rng.gen_range(0..len);
                let j = (i + rng.gen_range(1..32)).min(b.len());
                b.drain(i.min(b.len())..j);
            }
            3 => {
                let i = rng.gen_range(0..len).min(b.len());
                let j = (i + rng.gen_range(1..64)).min(b.len());
                let span = b[i..j].to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    b.splice(i..i, span.iter().copied());
                }
            }
            _ => {
                let i = rng.gen_range(0..=b.len());
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                b.splice(i..i, t.iter().copied());
            }
        }
    }
    b
}

/// A structure-aware mutation of a JSON document (or of each line of a JSONL one): a number,
/// string, array or object somewhere in it replaced by a hostile value, keeping the syntax.
fn mutate_json(src: &str, rng: &mut ChaCha8Rng) -> String {
    fn hostile(rng: &mut ChaCha8Rng) -> serde_json::Value {
        use serde_json::json;
        match rng.gen_range(0..12) {
            0 => json!(-1),
            1 => json!(u64::MAX),
            2 => json!(1e308),
            3 => json!(""),
            4 => json!("\u{0}\n<|im_start|>"),
            5 => json!(null),
            6 => json!([]),
            7 => json!({}),
            8 => json!(true),
            9 => json!(0),
            10 => json!(i64::MIN),
            _ => json!(4_294_967_296u64),
        }
    }
    fn nodes(v: &serde_json::Value) -> usize {
        1 + match v {
            serde_json::Value::Array(a) => a.iter().map(nodes).sum(),
            serde_json::Value::Object(o) => o.values().map(nodes).sum(),
            _ => 0,
        }
    }
    fn replace(v: &mut serde_json::Value, mut k: usize, new: serde_json::Value) -> usize {
        if k == 0 {
            *v = new;
            return usize::MAX;
        }
        k -= 1;
        let children: Vec<&mut serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            serde_json::Value::Object(o) => o.values_mut().collect(),
            _ => Vec::new(),
        };
        for c in children {
            let n = nodes(c);
            if k < n {
                return replace(c, k, new);
            }
            k -= n;
        }
        k
    }
    let doc = |text: &str, rng: &mut ChaCha8Rng| -> String {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) else {
            return text.to_string();
        };
        for _ in 0..rng.gen_range(1..=3) {
            let k = rng.gen_range(0..nodes(&v));
            let h = hostile(rng);
            replace(&mut v, k, h);
        }
        v.to_string()
    };
    if src.trim_start().starts_with('{') && src.trim().lines().count() > 1 && !src.contains("\n  ")
    {
        // JSONL: mutate one line.
        let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
        let i = rng.gen_range(0..lines.len());
        lines[i] = doc(&lines[i], rng);
        lines.join("\n") + "\n"
    } else {
        doc(src, rng)
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF.

/// What a header field is, so that mutations can aim at the fields that size allocations.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Count,
    StrLen,
    ValueType,
    ArrayType,
    ArrayLen,
    Scalar,
    NDims,
    Dim,
    DType,
    Offset,
}

/// Offsets and widths of the header fields of a valid v3 GGUF, and where its header ends.
fn layout(b: &[u8]) -> (Vec<(Field, usize, usize)>, usize) {
    let mut out = Vec::new();
    let mut p = 8;
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
    let tensors = u64_at(p);
    out.push((Field::Count, p, 8));
    let kvs = u64_at(p + 8);
    out.push((Field::Count, p + 8, 8));
    p += 16;
    fn value(b: &[u8], ty: u32, p: &mut usize, out: &mut Vec<(Field, usize, usize)>, sample: bool) {
        let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
        let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
        let fixed = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => 0,
        };
        if fixed > 0 {
            if sample {
                out.push((Field::Scalar, *p, fixed));
            }
            *p += fixed;
        } else if ty == 8 {
            let len = u64_at(*p) as usize;
            if sample {
                out.push((Field::StrLen, *p, 8));
            }
            *p += 8 + len;
        } else if ty == 9 {
            let inner = u32_at(*p);
            out.push((Field::ArrayType, *p, 4));
            let n = u64_at(*p + 4);
            out.push((Field::ArrayLen, *p + 4, 8));
            *p += 12;
            for i in 0..n {
                // Sample a few elements of long arrays (the vocabulary has hundreds).
                value(b, inner, p, out, i < 3);
            }
        }
    }
    for _ in 0..kvs {
        let len = u64_at(p) as usize;
        out.push((Field::StrLen, p, 8));
        p += 8 + len;
        let ty = u32_at(p);
        out.push((Field::ValueType, p, 4));
        p += 4;
        value(b, ty, &mut p, &mut out, true);
    }
    for _ in 0..tensors {
        let len = u64_at(p) as usize;
        out.push((Field::StrLen, p, 8));
        p += 8 + len;
        let nd = u32_at(p) as usize;
        out.push((Field::NDims, p, 4));
        p += 4;
        for _ in 0..nd {
            out.push((Field::Dim, p, 8));
            p += 8;
        }
        out.push((Field::DType, p, 4));
        out.push((Field::Offset, p + 4, 8));
        p += 12;
    }
    (out, p)
}

/// The valid tiny GGUF every GGUF case mutates (with a chat template, so that it is parsed too).
fn tiny_gguf() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        write_tiny_llama(
            &p,
            &TinyConfig {
                layers: 1,
                hidden: 32,
                heads: 2,
                kv_heads: 1,
                ffn: 32,
                chat_template: Some(
                    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into(),
                ),
                ..Default::default()
            },
        )
        .unwrap();
        std::fs::read(&p).unwrap()
    })
}

fn mutate_gguf(src: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (fields, header_end) = layout(src);
    let mut b = src.to_vec();
    for _ in 0..rng.gen_range(1..=2) {
        match rng.gen_range(0..10) {
            // A header field set to a value that breaks size arithmetic (most cases).
            0..=5 => {
                let (kind, at, width) = fields[rng.gen_range(0..fields.len())];
                if at + width > b.len() {
                    continue; // cut off by an earlier truncation
                }
                let old = match width {
                    1 => b[at] as u64,
                    2 => u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as u64,
                    4 => u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as u64,
                    _ => u64::from_le_bytes(b[at..at + 8].try_into().unwrap()),
                };
                let v = match rng.gen_range(0..4) {
                    0 => old.wrapping_add(1),
                    1 => old.wrapping_sub(1),
                    2 if matches!(kind, Field::ValueType | Field::ArrayType | Field::DType) => {
                        rng.gen_range(0..40)
                    }
                    _ => INTERESTING[rng.gen_range(0..INTERESTING.len())],
                };
                b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            // Truncated, mostly inside the header.
            6 => {
                let end = if rng.gen_bool(0.7) {
                    header_end
                } else {
                    b.len()
                };
                b.truncate(rng.gen_range(0..end.min(b.len()).max(1)));
            }
            // Bit flips, mostly in the header.
            7 | 8 => {
                let within = if rng.gen_bool(0.8) {
                    header_end
                } else {
                    b.len()
                };
                flip_bits(&mut b, rng, within);
            }
            // Tensor data replaced by NaN/inf patterns.
            _ => {
                if b.len() > header_end + 4 {
                    let i = rng.gen_range(header_end..b.len() - 4);
                    let v =
                        [f32::NAN, f32::INFINITY, -f32::INFINITY, f32::MAX][rng.gen_range(0..4)];
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    b
}

/// Loads a (mutated) model and, when it loads, uses it: a forward pass and the chat template.
/// Returns what happened, for the tally.
fn exercise_model(path: &Path, format: WeightFormat) -> String {
    let model = match Model::load(path, format, &Device::Cpu) {
        Ok(m) => m,
        Err(e) => return outcome(&e.to_string()),
    };
    if let Ok(ids) = model.encode("the cat sat") {
        if !ids.is_empty() {
            let _ = model.arch.causal_log_probs(&ids);
        }
    }
    if let Ok(t) = ChatTemplate::from_model(&model) {
        let _ = t.render(&[promptevo::evolve::ChatMessage::user("Hi")], true);
    }
    // The batched scoring engine (padded or packed, with the shared prefix) on a tiny task.
    if let Ok(mut scorer) = Scorer::new(&model, scoring_task(), EngineOptions::default()) {
        let _ = scorer.evaluate("Is it positive?", Split::Dev, Some(3), false);
    }
    "loaded".into()
}

/// A classification task for scoring fuzzed models (loaded once).
fn scoring_task() -> &'static Task {
    static TASK: OnceLock<Task> = OnceLock::new();
    TASK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), TASK_TOML).unwrap();
        std::fs::write(dir.path().join("dev.jsonl"), DATA).unwrap();
        std::fs::write(dir.path().join("test.jsonl"), DATA).unwrap();
        Task::load(&dir.path().join("t.toml")).unwrap()
    })
}

/// A short class of an error message for the tally (the words before any number or quote).
fn outcome(err: &str) -> String {
    let msg = err.split_once(": ").map_or(err, |(_, m)| m);
    let words: Vec<&str> = msg
        .split(|c: char| c.is_ascii_digit() || c == '\'' || c == '"' || c == '(')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .take(6)
        .collect();
    format!("error: {}", words.join(" "))
}

/// Counts outcomes and prints the most common ones.
#[derive(Default)]
struct Tally(std::collections::BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, what: String) {
        *self.0.entry(what).or_default() += 1;
    }
    fn print(&self, target: &str) {
        let mut v: Vec<_> = self.0.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        for (k, n) in v.iter().take(12) {
            eprintln!("fuzz {target}:   {n:5} {k}");
        }
    }
}

#[test]
fn gguf_mutations_fail_cleanly() {
    let started = Instant::now();
    let n = cases(3000);
    let src = tiny_gguf();
    let dir = tempfile::tempdir().unwrap();
    let mut findings = Vec::new();
    let mut tally = Tally::default();
    for case in 0..n {
        let seed = base_seed() ^ (case << 8);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bytes = mutate_gguf(src, &mut rng);
        let path = dir.path().join(format!("m{}.gguf", case % 4));
        std::fs::write(&path, &bytes).unwrap();
        let format =
            [WeightFormat::Bf16, WeightFormat::Native, WeightFormat::F32][case as usize % 3];
        let mut what = String::new();
        if let Some(msg) = run_case("gguf", seed, limit_for(bytes.len()), || {
            what = exercise_model(&path, format)
        }) {
            let keep = dir.path().join(format!("panic-{seed}.gguf"));
            let _ = std::fs::copy(&path, &keep);
            findings.push(format!("seed {seed} ({format:?}): {msg}"));
        }
        tally.add(what);
    }
    tally.print("gguf");
    report("gguf", n, started, &findings);
}

/// A GGUF with one header field set: `find` picks the field (nth of its kind).
fn with_field(kind: Field, nth: usize, value: u64) -> Vec<u8> {
    let src = tiny_gguf();
    let (fields, _) = layout(src);
    let (_, at, width) = *fields
        .iter()
        .filter(|f| f.0 == kind)
        .nth(nth)
        .expect("field");
    let mut b = src.clone();
    b[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    b
}

fn load_bytes_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, bytes).unwrap();
    let mut out = None;
    let msg = run_case("fixed case", 0, limit_for(bytes.len()), || {
        out = Some(Model::load(&p, WeightFormat::Bf16, &Device::Cpu).err());
    });
    assert_eq!(msg, None, "panicked");
    let err = out.flatten().expect("a malformed model loaded").to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn a_tensor_claiming_2_pow_40_elements_is_refused_before_allocating() {
    // The first tensor info's first dimension.
    let err = load_bytes_error(&with_field(Field::Dim, 0, 1 << 40));
    assert!(err.contains("m.gguf"), "{err}");
}

#[test]
fn a_tensor_size_wrapping_past_2_pow_64_is_refused() {
    // 2^42+1 × 2^22+… wraps a 64-bit element count to a small number in unchecked arithmetic.
    let mut b = with_field(Field::Dim, 0, (1 << 42) + 1);
    let (fields, _) = layout(&b);
    let (_, at, _) = *fields.iter().filter(|f| f.0 == Field::Dim).nth(1).unwrap();
    b[at..at + 8].copy_from_slice(&(1u64 << 22).to_le_bytes());
    let err = load_bytes_error(&b);
    assert!(err.contains("m.gguf"), "{err}");
}

#[test]
fn a_string_claiming_2_pow_60_bytes_is_refused_before_allocating() {
    let err = load_bytes_error(&with_field(Field::StrLen, 0, 1 << 60));
    assert!(err.contains("not a readable GGUF file"), "{err}");
}

#[test]
fn an_array_claiming_2_pow_60_elements_is_refused_before_allocating() {
    let err = load_bytes_error(&with_field(Field::ArrayLen, 0, 1 << 60));
    assert!(err.contains("not a readable GGUF file"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Task TOML and JSONL.

const TASK_TOML: &str = "name = \"t\"\ndescription = \"fuzzed\"\nkind = \"classification\"\ntemplate = \"{prompt}\\nReview: {input}\\nSentiment:\"\nlabels = [\"negative\", \"positive\"]\ninitial_prompts = [\"Is it positive?\", \"Classify it.\"]\n[data]\ndev = \"dev.jsonl\"\ntest = \"test.jsonl\"\n";
const GEN_TOML: &str = "name = \"g\"\nkind = \"generation\"\ntemplate = \"{prompt}\\nInput: {input}\\nOutput:\"\nmetric = \"exact\"\ninitial_prompts = [\"Opposite.\"]\n[data]\ndev = \"dev.jsonl\"\ntest = \"test.jsonl\"\n";
const DATA: &str = "{\"input\": \"good film\", \"target\": \"positive\"}\n\n{\"input\": \"bad\", \"target\": \"negative\", \"targets\": [\"negative\"]}\n{\"input\": 3, \"target\": \"positive\"}\n";

#[test]
fn task_mutations_fail_cleanly() {
    let started = Instant::now();
    let n = cases(3000);
    let dir = tempfile::tempdir().unwrap();
    let mut findings = Vec::new();
    let mut tally = Tally::default();
    for case in 0..n {
        let seed = base_seed() ^ (case << 8) ^ 0x7a5c;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let toml = if case % 3 == 2 { GEN_TOML } else { TASK_TOML };
        let (t, d) = match case % 4 {
            0 => (
                mutate_text(toml.as_bytes(), &mut rng),
                DATA.as_bytes().to_vec(),
            ),
            1 => (
                toml.as_bytes().to_vec(),
                if rng.gen_bool(0.5) {
                    mutate_json(DATA, &mut rng).into_bytes()
                } else {
                    mutate_text(DATA.as_bytes(), &mut rng)
                },
            ),
            _ => (
                mutate_text(toml.as_bytes(), &mut rng),
                mutate_text(DATA.as_bytes(), &mut rng),
            ),
        };
        let task = dir.path().join("t.toml");
        std::fs::write(&task, &t).unwrap();
        std::fs::write(dir.path().join("dev.jsonl"), &d).unwrap();
        std::fs::write(dir.path().join("test.jsonl"), DATA).unwrap();
        let mut what = String::new();
        if let Some(msg) = run_case("task", seed, limit_for(t.len() + d.len()), || {
            what = match Task::load(&task) {
                Ok(_) => "loaded".into(),
                Err(e) => {
                    let e = e.to_string();
                    assert_eq!(e.lines().count(), 1, "multi-line error: {e}");
                    outcome(&e)
                }
            };
        }) {
            findings.push(format!(
                "seed {seed}: {msg}\n  toml: {:?}\n  data: {:?}",
                String::from_utf8_lossy(&t),
                String::from_utf8_lossy(&d)
            ));
        }
        tally.add(what);
    }
    tally.print("task");
    report("task", n, started, &findings);
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json.

#[test]
fn tokenizer_json_mutations_fail_cleanly() {
    let started = Instant::now();
    let n = cases(1000);
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf()).unwrap();
    let model = Model::load(&gguf, WeightFormat::Bf16, &Device::Cpu).unwrap();
    let json = model.tokenizer.to_string(false).unwrap();
    // The model folder gets a tokenizer.json beside the GGUF, which Model::load then prefers.
    let side = dir.path().join("tokenizer.json");
    let mut findings = Vec::new();
    let mut tally = Tally::default();
    for case in 0..n {
        let seed = base_seed() ^ (case << 8) ^ 0x70c3;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bytes = if case.is_multiple_of(2) {
            mutate_json(&json, &mut rng).into_bytes()
        } else {
            mutate_text(json.as_bytes(), &mut rng)
        };
        std::fs::write(&side, &bytes).unwrap();
        let mut what = String::new();
        if let Some(msg) = run_case(
            "tokenizer",
            seed,
            limit_for(bytes.len() + tiny_gguf().len()),
            || {
                if let Ok(t) = promptevo::model::tokenizer::from_json_file(&side) {
                    if let Ok(enc) = t.encode("the cat <|im_start|> sat 123", false) {
                        let _ = t.decode(enc.get_ids(), false);
                    }
                }
                what = exercise_model(&gguf, WeightFormat::Bf16);
            },
        ) {
            let keep = dir.path().join(format!("panic-{seed}.json"));
            let _ = std::fs::copy(&side, &keep);
            findings.push(format!("seed {seed}: {msg}"));
        }
        tally.add(what);
    }
    tally.print("tokenizer.json");
    report("tokenizer.json", n, started, &findings);
}

// ---------------------------------------------------------------------------------------------
// Run folders for `resume` (through the binary: exit code 2 and one line, or success).

/// A finished tiny-model run: its folder, task and model.
fn tiny_run(root: &Path) -> PathBuf {
    std::fs::write(root.join("tiny.gguf"), tiny_gguf()).unwrap();
    std::fs::write(root.join("t.toml"), TASK_TOML).unwrap();
    std::fs::write(root.join("dev.jsonl"), DATA).unwrap();
    std::fs::write(root.join("test.jsonl"), DATA).unwrap();
    let run = root.join("run");
    let out = common::bin()
        .current_dir(common::root())
        .args([
            "optimize",
            "--quiet",
            "--population",
            "4",
            "--generations",
            "2",
        ])
        .arg("--task")
        .arg(root.join("t.toml"))
        .arg("--model")
        .arg(root.join("tiny.gguf"))
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Mutates one file of the run folder `work` for case `case`; returns its name.
fn mutate_run_file(work: &Path, case: u64, rng: &mut ChaCha8Rng) -> &'static str {
    const FILES: [&str; 3] = ["evaluations.jsonl", "checkpoint.json", "config.json"];
    let file = FILES[case as usize % FILES.len()];
    let original = std::fs::read(work.join(file)).unwrap_or_default();
    let mutated = if case.is_multiple_of(2) {
        mutate_json(&String::from_utf8_lossy(&original), rng).into_bytes()
    } else {
        mutate_text(&original, rng)
    };
    std::fs::write(work.join(file), mutated).unwrap();
    file
}

#[test]
#[ignore = "debug helper: PROMPTEVO_FUZZ_SHOW=case writes that resume case's folder to PROMPTEVO_FUZZ_OUT"]
fn show_run_case() {
    let case: u64 = std::env::var("PROMPTEVO_FUZZ_SHOW")
        .unwrap()
        .parse()
        .unwrap();
    let out = PathBuf::from(std::env::var("PROMPTEVO_FUZZ_OUT").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let seed = base_seed() ^ (case << 8) ^ 0x5e5e;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    copy_dir(&run, &out);
    let _ = std::fs::remove_file(out.join("result.json"));
    let file = mutate_run_file(&out, case, &mut rng);
    // config.json names the task and model by absolute path: keep them.
    eprintln!(
        "case {case} seed {seed}: mutated {file}; inputs in {}",
        dir.path().display()
    );
    std::mem::forget(dir);
}

#[test]
fn run_folder_mutations_resume_or_fail_cleanly() {
    let started = Instant::now();
    // A process per case: a twentieth of the cases asked for (60 by default).
    let n = std::env::var("PROMPTEVO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(60, |c| (c / 20).max(1));
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let mut findings = Vec::new();
    let mut tally = Tally::default();
    for case in 0..n {
        let seed = base_seed() ^ (case << 8) ^ 0x5e5e;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let work = dir.path().join("work");
        copy_dir(&run, &work);
        // An unfinished run: resume must replay the log.
        let _ = std::fs::remove_file(work.join("result.json"));
        let file = mutate_run_file(&work, case, &mut rng);
        let mut child = common::bin()
            .args(["resume", "--quiet"])
            .arg(&work)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t.elapsed() > Duration::from_secs(CASE_SECONDS) {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        CASES_RUN.fetch_add(1, Ordering::Relaxed);
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("promptevo: error"))
            .collect();
        // A config.json edited to ask for billions of generations, candidates or tournament
        // draws runs as long as asked (as the same flags would): not a hang.
        let huge_config = file == "config.json"
            && std::fs::read_to_string(work.join(file))
                .is_ok_and(|t| t.split(|c: char| !c.is_ascii_digit()).any(|d| d.len() >= 7));
        if status.is_none() && huge_config {
            tally.add(format!(
                "{file}: asks for a huge search (stopped after {CASE_SECONDS} s)"
            ));
            continue;
        }
        let clean = match status.and_then(|s| s.code()) {
            Some(0) => !err.contains("panicked"),
            Some(2) => errors.len() == 1 && !err.contains("panicked"),
            _ => false,
        };
        if !clean {
            findings.push(format!("seed {seed} ({file}): status {status:?}: {err}"));
        }
        tally.add(match errors.first() {
            Some(e) => format!("{file}: {}", outcome(e)),
            None => format!("{file}: {status:?}"),
        });
    }
    tally.print("run folder");
    report("run folder", n, started, &findings);
}

#[test]
#[ignore = "debug helper: PROMPTEVO_FUZZ_SHOW=seed prints what the GGUF case does"]
fn show_gguf_case() {
    let seed: u64 = std::env::var("PROMPTEVO_FUZZ_SHOW")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let src = tiny_gguf();
    let bytes = mutate_gguf(src, &mut rng);
    let diff: Vec<usize> = (0..bytes.len().min(src.len()))
        .filter(|&i| bytes[i] != src[i])
        .collect();
    eprintln!(
        "len {} -> {}, changed bytes at {diff:?}",
        src.len(),
        bytes.len()
    );
    let (fields, _) = layout(src);
    for &i in diff.iter().take(4) {
        if let Some(f) = fields.iter().find(|f| f.1 <= i && i < f.1 + f.2) {
            eprintln!("  byte {i}: field {f:?}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, &bytes).unwrap();
    eprintln!("{}", exercise_model(&p, WeightFormat::Bf16));
    match Model::load(&p, WeightFormat::Bf16, &Device::Cpu) {
        Ok(_) => eprintln!("loads"),
        Err(e) => eprintln!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions for what the fuzzer found.

/// The tiny model's own tokenizer.json, parsed.
fn tiny_tokenizer_json() -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf()).unwrap();
    let model = Model::load(&gguf, WeightFormat::Bf16, &Device::Cpu).unwrap();
    serde_json::from_str(&model.tokenizer.to_string(false).unwrap()).unwrap()
}

fn tokenizer_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, text).unwrap();
    let mut out = None;
    let msg = run_case("fixed tokenizer", 0, limit_for(text.len()), || {
        out = Some(promptevo::model::tokenizer::from_json_file(&p).err());
    });
    assert_eq!(msg, None, "panicked");
    let err = out
        .flatten()
        .expect("a broken tokenizer.json loaded")
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.lines().count() == 1,
        "{err}"
    );
    err
}

#[test]
fn a_tokenizer_json_with_a_bad_number_in_its_decoder_is_an_error_not_a_panic() {
    let mut json = tiny_tokenizer_json().to_string();
    // tokenizers 0.22 panicked with `Helper: Error(...)` on this.
    let at = json.find("\"decoder\":{").unwrap() + "\"decoder\":{".len();
    json.insert_str(at, "\"x\":1e999,");
    let err = tokenizer_error(&json);
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn a_bpe_merge_shorter_than_the_subword_prefix_is_an_error_not_a_panic() {
    let mut json = tiny_tokenizer_json();
    json["model"]["continuing_subword_prefix"] = "##########".into();
    // tokenizers 0.22 sliced `&b[prefix_len..]` out of bounds on this.
    let err = tokenizer_error(&json.to_string());
    assert!(err.contains("continuing_subword_prefix"), "{err}");
}

#[test]
fn the_generations_plot_of_a_log_claiming_2_pow_32_generations_is_drawn() {
    use promptevo::run::analysis::GenerationStats;
    let dir = tempfile::tempdir().unwrap();
    let stats: Vec<GenerationStats> = [0usize, 1 << 32]
        .iter()
        .map(|&generation| GenerationStats {
            generation,
            best: 0.5,
            median: 0.5,
            worst: 0.5,
            best_so_far: 0.5,
        })
        .collect();
    // Before the fix plotters was asked for 2^32 + 1 axis labels: minutes and gigabytes.
    let mut result = None;
    let p = dir.path().join("generations.svg");
    let msg = run_case("fixed plot", 0, limit_for(0), || {
        result = Some(promptevo::run::plots::generations(&p, &stats));
    });
    assert_eq!(msg, None, "panicked");
    result.unwrap().unwrap();
}
