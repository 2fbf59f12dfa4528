//! `judge`: a judge model scores each answer by the probability it gives " Yes" over " Yes"/" No"
//! after a rubric prompt showing the input, the answer and the reference (LLM-as-a-judge).
//! The probability, normalised over the two labels, is the fitness; above 0.5 the score is 1.
//!
//! The judge is a GGUF file or model folder (`judge_model`, relative to the task file's folder),
//! an OpenAI-compatible server (`http(s)://.../v1`), or `"scoring"`: the model that scores the
//! task. It is loaded (or connected to) when a scorer is made ([`Metric::prepare`]), so a judge
//! that cannot load stops a run before any work. A model file is rendered through its own chat
//! template when it has one (the prompt as the user turn, the labels "Yes"/"No" starting the
//! assistant turn), else as a plain completion ending in "Answer (Yes or No):" followed by
//! " Yes"/" No"; a server is always sent the completion form. The two label log-probs come from
//! the scoring machinery: the in-process [`Engine`], or a server's [`LabelScorer`], which the
//! scoring layer hands down when it prepares the metric ([`Services`]).

use std::path::PathBuf;
use std::sync::Mutex;

use super::common::{
    Answer, LabelScorer, Metric, MetricError, Params, Scored, ScoringModel, Services,
};
use crate::chat::ChatMessage;
use crate::model::{ChatTemplate, Model, WeightFormat};
use crate::remote::{is_server_url, Client, ServerConfig};
use crate::score::engine::{Engine, EngineOptions};

/// The `judge_model` value that names the model scoring the task.
const SCORING: &str = "scoring";

/// The last line of the completion form: the labels " Yes"/" No" follow it.
const COMPLETION_CUE: &str = "Answer (Yes or No):";

/// The last line of the chat form's user turn.
const CHAT_CUE: &str = "Reply with Yes or No.";

/// How judge weights are held: bf16, the command line's default, so that a judge that is the
/// scoring model gives the numbers the scoring model gives.
const JUDGE_WEIGHTS: WeightFormat = WeightFormat::Bf16;

/// Where the judge comes from, as the task file names it.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// A model file or folder (resolved against the task file's folder).
    File(PathBuf),
    /// An OpenAI-compatible server's base URL.
    Server(String),
    /// The model that scores the task.
    Scoring,
}

/// Which accepted answers the prompt shows as the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reference {
    /// The example's first target.
    First,
    /// Every target.
    All,
}

/// How the judge prompt is laid out.
#[derive(Debug)]
enum Form {
    /// Through the judge model's chat template (labels "Yes"/"No" open the assistant turn).
    Chat(Box<ChatTemplate>),
    /// A plain completion ending in [`COMPLETION_CUE`] (labels " Yes"/" No").
    Completion,
}

/// A judge ready to score.
enum Loaded {
    /// A model in this process, with the form its prompts take.
    Local { model: Box<Model>, form: Form },
    /// A server prepared to score the completion form's labels.
    Server(Box<dyn LabelScorer>),
}

/// The `judge` metric.
struct Judge {
    rubric: String,
    source: Source,
    reference: Reference,
    /// Loaded on first use (or by [`Metric::prepare`]); a failed load is not cached.
    loaded: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("source", &self.source)
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// The `judge` metric: `rubric` (required: what a good answer is), `judge_model` (a model file
/// relative to the task file's folder, a server URL, or "scoring", the default) and `reference`
/// ("first", the default, or "all" targets shown).
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let rubric = p.string("rubric")?.unwrap_or_default();
    if rubric.trim().is_empty() {
        return Err(p.bad(
            "rubric",
            "is missing or empty: add e.g. rubric = \"Is the answer an antonym of the input word?\" to the [metric] table",
        ));
    }
    let reference = match p.string("reference")?.as_deref() {
        None | Some("first") => Reference::First,
        Some("all") => Reference::All,
        Some(other) => {
            return Err(p.bad(
                "reference",
                format!("is {other:?}: use \"first\" (the first target) or \"all\" (every target)"),
            ))
        }
    };
    let model = p
        .string("judge_model")?
        .unwrap_or_else(|| SCORING.to_string());
    let model = model.trim();
    let source = if model == SCORING {
        Source::Scoring
    } else if is_server_url(model) {
        Source::Server(model.to_string())
    } else if model.is_empty() {
        return Err(p.bad(
            "judge_model",
            "is empty: give a GGUF path (relative to the task file), a server URL such as http://127.0.0.1:8000/v1, or \"scoring\"",
        ));
    } else {
        let path = p.folder().join(model);
        if !path.exists() {
            return Err(p.bad(
                "judge_model",
                format!(
                    "{} does not exist: give a GGUF path relative to the task file's folder (or absolute), a server URL, or \"scoring\" for the scoring model",
                    path.display()
                ),
            ));
        }
        Source::File(path)
    };
    Ok(Box::new(Judge {
        rubric: rubric.trim().to_string(),
        source,
        reference,
        loaded: Mutex::new(None),
    }))
}

/// An error about the judge model.
fn judge_error(model: impl std::fmt::Display, message: impl std::fmt::Display) -> MetricError {
    MetricError::Judge {
        model: model.to_string(),
        message: message.to_string(),
    }
}

/// The lines the judge reads about one answer: input, answer and reference.
fn answer_block(a: &Answer<'_>, reference: Reference) -> String {
    let reference = match (reference, a.targets) {
        (_, []) => "Reference answer: (none)".to_string(),
        (Reference::First, [first, ..]) | (Reference::All, [first]) => {
            format!("Reference answer: {first}")
        }
        (Reference::All, all) => format!("Reference answers: {}", all.join(" | ")),
    };
    format!(
        "Input: {}\nAnswer: {}\n{reference}",
        a.input.trim(),
        a.output.trim()
    )
}

/// The user turn of the chat form.
fn chat_message(rubric: &str, a: &Answer<'_>, reference: Reference) -> String {
    format!("{rubric}\n\n{}\n\n{CHAT_CUE}", answer_block(a, reference))
}

/// The completion form's whole prompt (the labels " Yes"/" No" follow it).
fn completion_prompt(rubric: &str, a: &Answer<'_>, reference: Reference) -> String {
    format!(
        "{rubric}\n\n{}\n\n{COMPLETION_CUE}",
        answer_block(a, reference)
    )
}

/// The labels of a form: "Yes"/"No" start an assistant turn (its header ends the rendering, so
/// no space comes first); " Yes"/" No" follow the completion cue.
fn labels(form: &Form) -> [&'static str; 2] {
    match form {
        Form::Chat(_) => ["Yes", "No"],
        Form::Completion => [" Yes", " No"],
    }
}

/// The longest common prefix of `texts`, cut at a character boundary (the text every judge
/// prompt of a batch shares, computed once by the engine).
fn common_prefix(texts: &[String]) -> &str {
    let Some(first) = texts.first() else {
        return "";
    };
    let mut end = first.len();
    for t in &texts[1..] {
        end = first
            .bytes()
            .zip(t.bytes())
            .take(end)
            .take_while(|(a, b)| a == b)
            .count();
    }
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    &first[..end]
}

/// P(yes) normalised over yes and no, from their log-probs.
fn yes_probability(yes: f32, no: f32) -> f64 {
    let (yes, no) = (f64::from(yes), f64::from(no));
    if !(yes.is_finite() || no.is_finite()) {
        return 0.5;
    }
    1.0 / (1.0 + (no - yes).exp())
}

impl Judge {
    /// What messages call the judge.
    fn shown(&self) -> String {
        match &self.source {
            Source::File(p) => p.display().to_string(),
            Source::Server(u) => u.clone(),
            Source::Scoring => SCORING.to_string(),
        }
    }

    /// Loads a model file as the judge, with its prompt form.
    fn load_file(path: &std::path::Path) -> Result<Loaded, MetricError> {
        let model = Model::load(path, JUDGE_WEIGHTS, &candle_core::Device::Cpu).map_err(|e| {
            judge_error(
                path.display(),
                format!("cannot be loaded ({e}); fix `[metric] judge_model` (a GGUF file or model folder, a server URL, or \"scoring\")"),
            )
        })?;
        let form = match model.chat_template {
            Some(_) => Form::Chat(Box::new(ChatTemplate::from_model(&model).map_err(|e| {
                judge_error(
                    path.display(),
                    format!("{e}; or use a judge model without a chat template"),
                )
            })?)),
            None => Form::Completion,
        };
        Ok(Loaded::Local {
            model: Box::new(model),
            form,
        })
    }

    /// Prepares a server to score the completion form's labels, through the scoring layer.
    fn load_server(client: Client, services: &Services<'_>) -> Result<Loaded, MetricError> {
        let url = client.url().to_string();
        let open = services.server_labels.ok_or_else(|| {
            judge_error(
                &url,
                "a server judge is reached through the scoring layer, which has not prepared this metric (a bug: please report it)",
            )
        })?;
        let labels = labels(&Form::Completion).map(str::to_string);
        let scorer = open(client, &labels).map_err(|e| {
            judge_error(
                &url,
                format!("cannot score \" Yes\"/\" No\" ({e}); fix `[metric] judge_model`"),
            )
        })?;
        Ok(Loaded::Server(scorer))
    }

    /// Loads the judge its source names (`scoring`: the model scoring the task, when known).
    fn load(&self, services: &Services<'_>) -> Result<Loaded, MetricError> {
        match (&self.source, services.scoring) {
            (Source::File(path), _) | (Source::Scoring, Some(ScoringModel::File(path))) => {
                Self::load_file(path)
            }
            (Source::Server(url), _) => {
                let client = Client::connect(&ServerConfig::new(url)).map_err(|e| {
                    judge_error(
                        url,
                        format!("does not answer ({e}); start the server or fix `[metric] judge_model`"),
                    )
                })?;
                Self::load_server(client, services)
            }
            (Source::Scoring, Some(ScoringModel::Server(client))) => {
                Self::load_server(client.clone(), services)
            }
            (Source::Scoring, None) => Err(judge_error(
                SCORING,
                "`[metric] judge_model = \"scoring\"` needs the model that scores the task, and none is known here; name the judge model file or server in `[metric] judge_model`",
            )),
        }
    }

    /// The judge, loading it first when it is not loaded yet.
    fn with_loaded<T>(
        &self,
        services: &Services<'_>,
        f: impl FnOnce(&mut Loaded) -> Result<T, MetricError>,
    ) -> Result<T, MetricError> {
        let mut slot = self
            .loaded
            .lock()
            .map_err(|_| judge_error(self.shown(), "an earlier scoring thread panicked"))?;
        if slot.is_none() {
            *slot = Some(self.load(services)?);
        }
        match slot.as_mut() {
            Some(loaded) => f(loaded),
            None => Err(judge_error(self.shown(), "was not loaded")),
        }
    }

    /// The judge prompts of `answers` in `form`.
    fn prompts(
        &self,
        form: &Form,
        model: Option<&Model>,
        answers: &[Answer<'_>],
    ) -> Result<Vec<String>, MetricError> {
        answers
            .iter()
            .map(|a| match form {
                Form::Completion => Ok(completion_prompt(&self.rubric, a, self.reference)),
                Form::Chat(template) => {
                    let message = ChatMessage::user(chat_message(&self.rubric, a, self.reference));
                    let text = template
                        .render(&[message], true)
                        .map_err(|e| judge_error(self.shown(), e))?;
                    Ok(match model {
                        Some(m) => without_template_bos(m, text),
                        None => text,
                    })
                }
            })
            .collect()
    }
}

/// The rendering without a BOS token text the template wrote itself when the engine adds BOS
/// anyway (it would be there twice).
fn without_template_bos(model: &Model, text: String) -> String {
    let bos = match (model.special.add_bos, model.special.bos) {
        (true, Some(id)) => model.tokenizer.id_to_token(id),
        _ => None,
    };
    match bos {
        Some(b) if !b.is_empty() && text.starts_with(&b) => text[b.len()..].to_string(),
        _ => text,
    }
}

impl Metric for Judge {
    fn prepare(&self, services: &Services<'_>) -> Result<(), MetricError> {
        self.with_loaded(services, |_| Ok(()))
    }

    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        if answers.is_empty() {
            return Ok(Vec::new());
        }
        let logprobs = self.with_loaded(&Services::default(), |loaded| match loaded {
            Loaded::Local { model, form } => {
                let texts = self.prompts(form, Some(model), answers)?;
                let continuations = labels(form)
                    .iter()
                    .map(|l| model.encode(l))
                    .collect::<crate::error::Result<Vec<_>>>()
                    .map_err(|e| judge_error(self.shown(), e))?;
                let prefix = common_prefix(&texts).to_string();
                let suffixes: Vec<String> = texts
                    .iter()
                    .map(|t| t[prefix.len()..].to_string())
                    .collect();
                let mut engine = Engine::new(model, EngineOptions::default());
                engine
                    .score(&prefix, &suffixes, &continuations)
                    .map_err(|e| judge_error(self.shown(), e))
            }
            Loaded::Server(backend) => {
                let texts = self.prompts(&Form::Completion, None, answers)?;
                let prefix = common_prefix(&texts).to_string();
                let suffixes: Vec<String> = texts
                    .iter()
                    .map(|t| t[prefix.len()..].to_string())
                    .collect();
                backend
                    .label_logprobs(&prefix, &suffixes)
                    .map_err(|e| judge_error(self.shown(), e))
            }
        })?;
        Ok(logprobs
            .iter()
            .map(|lp| {
                let p = match lp.as_slice() {
                    [yes, no] => yes_probability(*yes, *no),
                    _ => 0.5,
                };
                Scored {
                    score: f64::from(u8::from(p > 0.5)),
                    fitness: p,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{error, t};
    use crate::task::metric::MetricSpec;
    use std::path::Path;

    fn answer<'a>(output: &'a str, targets: &'a [String]) -> Answer<'a> {
        Answer {
            input: "hot",
            output,
            targets,
        }
    }

    #[test]
    fn the_completion_prompt_shows_rubric_input_answer_and_reference() {
        let targets = t(&["cold", "chilly"]);
        let a = answer(" cold ", &targets);
        assert_eq!(
            completion_prompt("Is it an antonym?", &a, Reference::First),
            "Is it an antonym?\n\nInput: hot\nAnswer: cold\nReference answer: cold\n\nAnswer (Yes or No):"
        );
        assert!(completion_prompt("R", &a, Reference::All)
            .contains("Reference answers: cold | chilly\n"));
        assert_eq!(
            chat_message("R", &a, Reference::First),
            "R\n\nInput: hot\nAnswer: cold\nReference answer: cold\n\nReply with Yes or No."
        );
        assert!(completion_prompt("R", &answer("x", &[]), Reference::First)
            .contains("Reference answer: (none)"));
    }

    #[test]
    fn the_chat_prompt_goes_through_the_models_template_ending_in_the_assistant_header() {
        let template = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into(),
            String::new(),
            String::new(),
            PathBuf::from("judge.gguf"),
        )
        .unwrap();
        let judge = Judge {
            rubric: "Is it an antonym?".into(),
            source: Source::Scoring,
            reference: Reference::First,
            loaded: Mutex::new(None),
        };
        let targets = t(&["cold"]);
        let form = Form::Chat(Box::new(template));
        let got = judge
            .prompts(&form, None, &[answer("cold", &targets)])
            .unwrap();
        assert_eq!(
            got,
            vec!["<|im_start|>user\nIs it an antonym?\n\nInput: hot\nAnswer: cold\nReference answer: cold\n\nReply with Yes or No.<|im_end|>\n<|im_start|>assistant\n".to_string()]
        );
        assert_eq!(labels(&form), ["Yes", "No"]);
        assert_eq!(labels(&Form::Completion), [" Yes", " No"]);
    }

    #[test]
    fn the_probability_is_normalised_over_yes_and_no() {
        assert!((yes_probability(-1.0, -1.0) - 0.5).abs() < 1e-12);
        let p = yes_probability((0.3f32).ln(), (0.1f32).ln());
        assert!((p - 0.75).abs() < 1e-6, "{p}");
        assert_eq!(yes_probability(f32::NEG_INFINITY, f32::NEG_INFINITY), 0.5);
        assert_eq!(yes_probability(0.0, f32::NEG_INFINITY), 1.0);
    }

    #[test]
    fn the_shared_prefix_stops_at_the_first_difference_on_a_char_boundary() {
        let texts = vec!["abcé1".to_string(), "abcé2".to_string(), "abcè".to_string()];
        assert_eq!(common_prefix(&texts), "abc");
        assert_eq!(common_prefix(&texts[..1]), "abcé1");
        assert_eq!(common_prefix(&[]), "");
    }

    #[test]
    fn parameter_errors_name_the_key_and_the_fix() {
        let e = error("judge", "judge_model = \"scoring\"");
        assert!(
            e.contains("[metric] rubric") && e.contains("missing"),
            "{e}"
        );
        let e = error("judge", "rubric = \"  \"");
        assert!(e.contains("[metric] rubric"), "{e}");
        let e = error(
            "judge",
            "rubric = \"R\"\njudge_model = \"no-such-judge.gguf\"",
        );
        assert!(
            e.contains("[metric] judge_model")
                && e.contains("no-such-judge.gguf")
                && e.contains("does not exist"),
            "{e}"
        );
        let e = error("judge", "rubric = \"R\"\nreference = \"best\"");
        assert!(
            e.contains("[metric] reference") && e.contains("\"all\""),
            "{e}"
        );
        let e = error("judge", "rubric = \"R\"\njudge = \"x\"");
        assert!(e.contains("judge_model") && e.contains("rubric"), "{e}");
    }

    #[test]
    fn a_judge_file_that_does_not_load_is_one_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("judge.gguf"), "not a model").unwrap();
        let params: toml::Table =
            toml::from_str("rubric = \"R\"\njudge_model = \"judge.gguf\"").unwrap();
        let spec = MetricSpec::new("judge", params, dir.path()).unwrap();
        let e = spec.prepare(&Services::default()).unwrap_err().to_string();
        assert!(
            e.contains("judge.gguf") && e.contains("cannot be loaded"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let targets = t(&["cold"]);
        let e = spec
            .score(&[answer("cold", &targets)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be loaded"), "{e}");
    }

    #[test]
    fn the_scoring_judge_needs_the_scoring_model() {
        let params: toml::Table = toml::from_str("rubric = \"R\"").unwrap();
        let spec = MetricSpec::new("judge", params, Path::new(".")).unwrap();
        let targets = t(&["cold"]);
        let e = spec
            .score(&[answer("cold", &targets)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"scoring\"") && e.contains("judge_model"),
            "{e}"
        );
    }
}
