//! Prompt formats: how a prompt and an input become the model's text. `completion` wraps them in
//! the task's `template`; `chat` fills the `system` and `user` message templates and renders the
//! chat through the scoring model's own chat template (generation prompt added), with the
//! prompt's demonstrations as earlier user/assistant turns. Either way the text splits into
//! prefix | input | suffix, so the prefix's KV cache is computed once per prompt.

use serde::Serialize;

use crate::chat::ChatMessage;
use crate::error::{Error, Result};
use crate::model::ChatTemplate;

/// Default `system` message template of chat tasks: the prompt is the system message.
pub(crate) const DEFAULT_SYSTEM: &str = "{prompt}";
/// Default `user` message template of chat tasks: the input alone.
pub(crate) const DEFAULT_USER: &str = "{input}";

/// Marks the start of a demonstration's user turn in a chat prompt's text (after a blank line).
pub(crate) const DEMO_USER: &str = "User: ";
/// Marks the start of a demonstration's assistant turn (on its own line after the user turn).
pub(crate) const DEMO_ASSISTANT: &str = "Assistant: ";

/// Stands for the input while the chat is rendered once per prompt; the rendering is split on
/// it. Angle brackets and a fixed tag: no template rewrites it, and no prompt or input holds it
/// (one that does is an error, never a wrong split).
const INPUT_MARK: &str = "<<promptevo-input-7c1f>>";

/// How a task's prompt and input become the model's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum Format {
    /// Raw completion: the task's `template` around the prompt and the input.
    Completion,
    /// A chat rendered through the scoring model's own chat template.
    Chat(ChatFormat),
}

/// Why a chat task's message templates are invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatFormatError {
    /// `user` has no `{input}`: examples would never reach the model.
    #[error("`user` has no {{input}} placeholder: add {{input}} where each example's text goes (default user = \"{{input}}\")")]
    MissingInput,
    /// `{input}` appears more than once in `user`, or in `system`.
    #[error("{{input}} must appear once, in `user` only: keep a single {{input}} in `user`")]
    RepeatedInput,
    /// Neither template has `{prompt}`: the prompt being optimised would never reach the model.
    #[error("neither `system` nor `user` has a {{prompt}} placeholder: put {{prompt}} in one of them (default system = \"{{prompt}}\")")]
    MissingPrompt,
    /// `{prompt}` appears more than once.
    #[error("{{prompt}} appears more than once in `system` and `user`: keep a single {{prompt}}")]
    RepeatedPrompt,
    /// `{prompt}` comes after `{input}` in `user` (the prompt must come first to share its
    /// computation, as in completion templates).
    #[error(
        "`user` has {{prompt}} after {{input}}: put {{prompt}} before {{input}}, or in `system`"
    )]
    PromptAfterInput,
}

/// The message templates of a chat task: `system` and `user`, with `{prompt}` in one of them
/// and `{input}` once in `user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatFormat {
    system: String,
    user: String,
}

/// One demonstration of a chat prompt: an earlier user turn and the assistant's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Demo {
    /// The demonstration's input (filled into `user` like the final turn's).
    pub input: String,
    /// The assistant's answer (a label's verbaliser, or an accepted answer).
    pub answer: String,
}

impl ChatFormat {
    /// Checks and wraps the message templates (`None`: the defaults).
    pub fn new(
        system: Option<&str>,
        user: Option<&str>,
    ) -> std::result::Result<Self, ChatFormatError> {
        let system = system.unwrap_or(DEFAULT_SYSTEM).to_string();
        let user = user.unwrap_or(DEFAULT_USER).to_string();
        let inputs = user.matches("{input}").count();
        if inputs == 0 {
            return Err(ChatFormatError::MissingInput);
        }
        if inputs > 1 || system.contains("{input}") {
            return Err(ChatFormatError::RepeatedInput);
        }
        match system.matches("{prompt}").count() + user.matches("{prompt}").count() {
            0 => return Err(ChatFormatError::MissingPrompt),
            1 => {}
            _ => return Err(ChatFormatError::RepeatedPrompt),
        }
        let input_at = user.find("{input}").unwrap_or(0);
        if user[input_at..].contains("{prompt}") {
            return Err(ChatFormatError::PromptAfterInput);
        }
        Ok(Self { system, user })
    }

    /// The `system` message template.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The `user` message template.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The chat for `prompt` (its instruction and demonstrations, see [`split_demos`]) and one
    /// input: the system message (left out when `system` fills to nothing, so the model's
    /// template supplies its default), each demonstration as a user turn and an assistant turn,
    /// then the input's user turn. Every user turn fills `user` the same way.
    pub fn messages(&self, prompt: &str, input: &str) -> Vec<ChatMessage> {
        let (instruction, demos) = split_demos(prompt);
        let mut out = Vec::with_capacity(2 + 2 * demos.len());
        let system = fill(&self.system, instruction, "");
        if !system.is_empty() {
            out.push(ChatMessage::system(system));
        }
        for d in demos {
            out.push(ChatMessage::user(fill(&self.user, instruction, &d.input)));
            out.push(ChatMessage::assistant(d.answer));
        }
        out.push(ChatMessage::user(fill(&self.user, instruction, input)));
        out
    }
}

/// `template` with `{prompt}` and `{input}` filled in one pass (a prompt holding the text
/// "{input}" stays as it is).
fn fill(template: &str, prompt: &str, input: &str) -> String {
    let mut out = String::with_capacity(template.len() + prompt.len() + input.len());
    let mut rest = template;
    loop {
        let p = rest.find("{prompt}");
        let i = rest.find("{input}");
        let (at, len, value) = match (p, i) {
            (Some(p), Some(i)) if p < i => (p, "{prompt}".len(), prompt),
            (_, Some(i)) => (i, "{input}".len(), input),
            (Some(p), None) => (p, "{prompt}".len(), prompt),
            (None, None) => break,
        };
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// A demonstration written into a chat prompt's text: `User: <input>`, a newline,
/// `Assistant: <answer>`. Prompts hold demonstrations after their instruction, one blank line
/// before each; [`split_demos`] reads them back, so a `best.txt` pasted into `eval --prompt`
/// renders the same turns.
pub fn demonstration(input: &str, answer: &str) -> String {
    format!("{DEMO_USER}{input}\n{DEMO_ASSISTANT}{answer}")
}

/// A chat prompt's instruction and its demonstrations: the longest run of blocks at the end of
/// the text that each start (after a blank line, or at the very start) with `User: ` and hold a
/// line starting with `Assistant: ` (the last such line starts the answer). Anything else is
/// instruction, so no text is ever refused.
pub(crate) fn split_demos(prompt: &str) -> (&str, Vec<Demo>) {
    let sep = format!("\n\n{DEMO_USER}");
    // Candidate block starts (the byte where `User: ` begins), in order.
    let mut starts: Vec<usize> = prompt.match_indices(&sep).map(|(i, _)| i + 2).collect();
    if prompt.starts_with(DEMO_USER) {
        starts.insert(0, 0);
    }
    let mut demos = Vec::new();
    let mut end = prompt.len();
    let mut first = end;
    for &start in starts.iter().rev() {
        let block = &prompt[start + DEMO_USER.len()..end];
        let Some(at) = block.rfind(&format!("\n{DEMO_ASSISTANT}")) else {
            break;
        };
        demos.push(Demo {
            input: block[..at].to_string(),
            answer: block[at + 1 + DEMO_ASSISTANT.len()..].to_string(),
        });
        first = start;
        // The block before this one ends at its blank line.
        end = start.saturating_sub(2);
    }
    demos.reverse();
    let instruction = if first == prompt.len() {
        prompt
    } else {
        &prompt[..first.saturating_sub(2)]
    };
    (instruction, demos)
}

/// A chat format bound to a model's chat template: renders a prompt's chat once with a mark for
/// the input and splits it there.
pub struct ChatRenderer {
    template: ChatTemplate,
    /// Text the backend's tokenisation already puts first (the BOS token's text, when the
    /// model adds BOS): dropped from the rendering's start so that it is not there twice.
    leading: Option<String>,
}

impl ChatRenderer {
    /// A renderer over `template`; `leading` is the BOS text the backend adds on its own (None
    /// when it adds nothing).
    pub fn new(template: ChatTemplate, leading: Option<String>) -> Self {
        Self {
            template,
            leading: leading.filter(|s| !s.is_empty()),
        }
    }

    /// The text before and after the input for `prompt`: everything up to the final user turn's
    /// input is the shared prefix; the suffix ends with the assistant header (the generation
    /// prompt), so a verbaliser scored after it starts the assistant's turn.
    pub fn split(&self, format: &ChatFormat, prompt: &str) -> Result<(String, String)> {
        let messages = format.messages(prompt, INPUT_MARK);
        let mut text = self.template.render(&messages, true)?;
        if let Some(lead) = &self.leading {
            if text.starts_with(lead.as_str()) {
                text.drain(..lead.len());
            }
        }
        let mut found = text.match_indices(INPUT_MARK);
        match (found.next(), found.next()) {
            (Some((at, _)), None) => Ok((
                text[..at].to_string(),
                text[at + INPUT_MARK.len()..].to_string(),
            )),
            (None, _) => Err(Error::chat_template(
                self.template.origin(),
                "the chat template dropped the final user message's text, so the input has no place in it; use a chat model whose template renders user messages, or format = \"completion\"",
            )),
            (Some(_), Some(_)) => Err(Error::Usage(format!(
                "the prompt or a demonstration contains {INPUT_MARK:?}, which promptevo reserves for the input; remove it"
            ))),
        }
    }

    /// The whole text for `prompt` and one input (the prefix, the input, the suffix).
    pub fn render(&self, format: &ChatFormat, prompt: &str, input: &str) -> Result<String> {
        let (before, after) = self.split(format, prompt)?;
        Ok(format!("{before}{input}{after}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2's ChatML template, as its GGUF carries it.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn renderer(source: &str, leading: Option<&str>) -> ChatRenderer {
        let t =
            ChatTemplate::new(source.into(), "<s>".into(), "</s>".into(), "m.gguf".into()).unwrap();
        ChatRenderer::new(t, leading.map(str::to_string))
    }

    #[test]
    fn chat_splits_before_the_final_input_and_ends_with_the_assistant_header() {
        let f = ChatFormat::new(None, Some("Review: {input}")).unwrap();
        let (before, after) = renderer(CHATML, None).split(&f, "Classify.").unwrap();
        assert_eq!(
            before,
            "<|im_start|>system\nClassify.<|im_end|>\n<|im_start|>user\nReview: "
        );
        assert_eq!(after, "<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn demos_become_earlier_user_and_assistant_turns() {
        let f = ChatFormat::new(None, None).unwrap();
        let prompt = format!(
            "Classify.\n\n{}\n\n{}",
            demonstration("a gem", "positive"),
            demonstration("a dud\nreally", "negative")
        );
        let text = renderer(CHATML, None).render(&f, &prompt, "fine").unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nClassify.<|im_end|>\n\
             <|im_start|>user\na gem<|im_end|>\n<|im_start|>assistant\npositive<|im_end|>\n\
             <|im_start|>user\na dud\nreally<|im_end|>\n<|im_start|>assistant\nnegative<|im_end|>\n\
             <|im_start|>user\nfine<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn prompt_in_user_fills_every_user_turn_and_empty_system_is_left_out() {
        let f = ChatFormat::new(Some(""), Some("{prompt}\n{input}")).unwrap();
        let prompt = format!("Classify.\n\n{}", demonstration("a gem", "positive"));
        let m = f.messages(&prompt, "fine");
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(m[0].content, "Classify.\na gem");
        assert_eq!(m[2].content, "Classify.\nfine");
        // SmolLM2's template then supplies its default system message.
        let (before, _) = renderer(CHATML, None).split(&f, "P").unwrap();
        assert!(before.starts_with("<|im_start|>system\nYou are a helpful AI assistant"));
    }

    #[test]
    fn demo_blocks_round_trip_and_other_text_stays_instruction() {
        let d = [
            Demo {
                input: "x\n\ny".into(),
                answer: " positive".into(),
            },
            Demo {
                input: "z".into(),
                answer: "negative".into(),
            },
        ];
        let prompt = format!(
            "Say it.\nUser: not a demo\n\n{}\n\n{}",
            demonstration(&d[0].input, &d[0].answer),
            demonstration(&d[1].input, &d[1].answer)
        );
        let (instruction, demos) = split_demos(&prompt);
        assert_eq!(instruction, "Say it.\nUser: not a demo");
        assert_eq!(demos, d);
        assert_eq!(split_demos("Just text."), ("Just text.", vec![]));
        // A `User:` block without an answer is instruction, as is everything before it.
        let (instruction, demos) = split_demos("A.\n\nUser: q\n\nUser: x\nAssistant: y");
        assert_eq!((instruction, demos.len()), ("A.\n\nUser: q", 1));
        let (instruction, demos) = split_demos("User: x\nAssistant: y");
        assert_eq!((instruction, demos.len()), ("", 1));
    }

    #[test]
    fn bad_message_templates_are_named() {
        use ChatFormatError::*;
        assert_eq!(ChatFormat::new(None, Some("Review")), Err(MissingInput));
        assert_eq!(ChatFormat::new(Some("{input}"), None), Err(RepeatedInput));
        assert_eq!(ChatFormat::new(Some("Hi"), None), Err(MissingPrompt));
        assert_eq!(
            ChatFormat::new(None, Some("{prompt} {input}")),
            Err(RepeatedPrompt)
        );
        assert_eq!(
            ChatFormat::new(Some(""), Some("{input} {prompt}")),
            Err(PromptAfterInput)
        );
        assert!(MissingInput.to_string().contains("add {input}"));
    }

    #[test]
    fn fill_is_one_pass() {
        assert_eq!(fill("{prompt}|{input}", "{input}", "x"), "{input}|x");
        assert_eq!(fill("a{input}b", "p", "{prompt}"), "a{prompt}b");
    }

    #[test]
    fn a_leading_bos_is_not_doubled_and_a_dropped_input_is_an_error() {
        let f = ChatFormat::new(None, None).unwrap();
        let src = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}";
        let (before, _) = renderer(src, Some("<s>")).split(&f, "P").unwrap();
        assert_eq!(before, "[system]P[user]");
        let (before, _) = renderer(src, None).split(&f, "P").unwrap();
        assert_eq!(before, "<s>[system]P[user]");
        let err = renderer("{{ messages[0].content }}", None)
            .split(&f, "P")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.gguf") && err.contains("format = \"completion\""),
            "{err}"
        );
    }
}
