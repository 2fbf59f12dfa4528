//! Operators that ask the local instruct model to rewrite prompts, with EvoPrompt's
//! meta-prompts (Guo et al., "Connecting Large Language Models with Evolutionary Algorithms
//! Yields Powerful Prompt Optimizers", ICLR 2024), and the cleaning every model reply goes
//! through before it becomes a prompt.

use rand_chacha::ChaCha8Rng;

use super::operator::{Family, Operator, OperatorContext};
use crate::chat::ChatMessage;
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;

/// Longest prompt (characters) a model reply may become; longer replies are rejected.
pub const MAX_PROMPT_CHARS: usize = 400;

/// System turn of the paraphrase edit.
pub(crate) const PARAPHRASE_SYSTEM: &str =
    "You rewrite sentences in other words. Reply with the rewritten sentence only.";

/// System turn of prompt-writing operators.
pub(crate) const PROMPT_WRITER_SYSTEM: &str =
    "You write short instructions (prompts) for a language model. Reply with the prompt only.";

/// Cleans a model reply into prompt text: takes the text between `<prompt>` tags when present,
/// drops chat markers and leading labels ("Prompt:", "Final prompt:"), cuts at the first blank
/// line, strips surrounding quotes and whitespace. None when the result is empty, longer than
/// [`MAX_PROMPT_CHARS`], or holds a template placeholder (`{input}`, `{prompt}`) or a chat marker
/// the template would not survive.
pub fn clean_reply(reply: &str) -> Option<String> {
    let mut text = extract_tagged(reply).unwrap_or(reply).to_string();
    for marker in [
        "<|im_start|>assistant",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "</s>",
    ] {
        text = text.replace(marker, "\n\n");
    }
    let text = text.trim_start();
    let text = text.split("\n\n").next().unwrap_or("").trim();
    let quotes = |c: char| c == '"' || c == '\'' || c == '`' || c == '\u{201C}' || c == '\u{201D}';
    let mut text = text;
    loop {
        text = text.trim_start_matches(quotes).trim_start();
        let lower = text.to_lowercase();
        let label = [
            "final prompt:",
            "new prompt:",
            "prompt:",
            "instruction mutant:",
            "instruction:",
            "paraphrase:",
            "answer:",
            "sure!",
            "sure,",
        ]
        .iter()
        .find(|l| lower.starts_with(*l));
        if let Some(l) = label {
            text = text[l.len()..].trim_start();
            continue;
        }
        // "1. ", "2) " list markers and "Basic Prompt:", "Prompt 3:", "Simple Prompt:" labels
        // that echo the meta-prompt's own structure.
        if let Some(rest) = strip_list_marker(text).or_else(|| strip_prompt_label(text)) {
            text = rest;
            continue;
        }
        break;
    }
    let text = text.trim_matches(quotes).trim();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let bad = text.is_empty()
        || text.chars().count() > MAX_PROMPT_CHARS
        || text.contains("{input}")
        || text.contains("{prompt}")
        || text.contains("<|")
        || text.contains("<prompt>")
        || text.contains("</prompt>");
    (!bad).then_some(text)
}

/// `text` without a leading "12. " or "3) " list marker.
fn strip_list_marker(text: &str) -> Option<&str> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 || digits > 2 {
        return None;
    }
    let rest = &text[digits..];
    let rest = rest
        .strip_prefix(". ")
        .or_else(|| rest.strip_prefix(") "))?;
    Some(rest.trim_start())
}

/// `text` without a leading "<word> Prompt:" or "Prompt <n>:" label (at most 3 words).
fn strip_prompt_label(text: &str) -> Option<&str> {
    let colon = text.find(':')?;
    let head = text[..colon].to_lowercase();
    let words: Vec<&str> = head.split_whitespace().collect();
    let is_label = (1..=3).contains(&words.len())
        && words.iter().any(|w| *w == "prompt" || *w == "instruction")
        && words
            .iter()
            .all(|w| w.chars().all(|c| c.is_alphanumeric() || c == '-'));
    is_label.then(|| text[colon + 1..].trim_start())
}

/// The text between the last complete `<prompt>` and `</prompt>` pair, or after a final
/// unclosed `<prompt>`.
pub fn extract_tagged(reply: &str) -> Option<&str> {
    let start = reply.rfind("<prompt>")? + "<prompt>".len();
    let rest = &reply[start..];
    Some(match rest.find("</prompt>") {
        Some(end) => &rest[..end],
        None => rest,
    })
}

/// Asks the model (`system` then `user` turn) and cleans its reply with [`clean_reply`]; None
/// when there is no generator or the reply is rejected (counted in the context).
pub(crate) fn ask_for_text(
    ctx: &mut OperatorContext<'_>,
    system: &str,
    user: String,
    rng: &mut ChaCha8Rng,
) -> Result<Option<String>, EvolveError> {
    let messages = [ChatMessage::system(system), ChatMessage::user(user)];
    let Some(reply) = ctx.chat(&messages, rng)? else {
        return Ok(None);
    };
    let text = clean_reply(&reply);
    if text.is_none() {
        ctx.rejected_replies += 1;
    }
    Ok(text)
}

/// Asks the model for a prompt and parses its cleaned reply into a genome.
pub(crate) fn ask_for_prompt(
    ctx: &mut OperatorContext<'_>,
    user: String,
    rng: &mut ChaCha8Rng,
) -> Result<Option<Genome>, EvolveError> {
    Ok(ask_for_text(ctx, PROMPT_WRITER_SYSTEM, user, rng)?.map(|text| Genome::parse(&text)))
}

/// EvoPrompt-GA: "cross over these two prompts, then mutate the result" in one meta-prompt.
/// The child keeps parent 1's persona, constraint and demonstrations.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvoGa;

impl Operator for EvoGa {
    fn name(&self) -> &'static str {
        "evo-ga"
    }

    fn family(&self) -> Family {
        Family::Model
    }

    fn arity(&self) -> usize {
        2
    }

    fn apply(
        &self,
        parents: &[&Genome],
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let [a, b, ..] = parents else {
            return Ok(None);
        };
        let user = format!(
            "Please follow the instruction step-by-step to generate a better prompt.\n\
             1. Cross over the following prompts and generate a new prompt:\n\
             Prompt 1: {}\nPrompt 2: {}\n\
             2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.",
            a.render_phrases(),
            b.render_phrases()
        );
        Ok(ask_for_prompt(ctx, user, rng)?.map(|g| with_genes_of(g, a)))
    }
}

/// EvoPrompt-DE: mutate the parts in which two prompts differ, combine them with the best prompt
/// so far, and cross the result over with the current prompt. Parents: (current, donor 1,
/// donor 2); the best prompt comes from the context (the current prompt when none is known).
#[derive(Clone, Copy, Debug, Default)]
pub struct EvoDe;

impl Operator for EvoDe {
    fn name(&self) -> &'static str {
        "evo-de"
    }

    fn family(&self) -> Family {
        Family::Model
    }

    fn arity(&self) -> usize {
        3
    }

    fn apply(
        &self,
        parents: &[&Genome],
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError> {
        let [base, a, b, ..] = parents else {
            return Ok(None);
        };
        let best = ctx.best.first().unwrap_or(base).render_phrases();
        let user = format!(
            "Please follow the instruction step-by-step to generate a better prompt.\n\
             1. Identify the different parts between the Prompt 1 and Prompt 2:\n\
             Prompt 1: {}\nPrompt 2: {}\n\
             2. Randomly mutate the different parts.\n\
             3. Combine the different parts with Prompt 3, selectively replace it with the different parts in Step 2 and generate a new prompt.\n\
             Prompt 3: {best}\n\
             4. Cross over the prompt in the Step 3 with the following basic prompt and generate a final prompt bracketed with <prompt> and </prompt>:\n\
             Basic Prompt: {}",
            a.render_phrases(),
            b.render_phrases(),
            base.render_phrases()
        );
        Ok(ask_for_prompt(ctx, user, rng)?.map(|g| with_genes_of(g, base)))
    }
}

/// `child` (phrases from the model) with the persona, constraint and demos of `parent`.
pub(crate) fn with_genes_of(child: Genome, parent: &Genome) -> Genome {
    Genome {
        phrases: child.phrases,
        ..parent.clone()
    }
}

impl Genome {
    /// The instruction phrases alone, joined with spaces (what model-driven operators rewrite).
    pub(crate) fn render_phrases(&self) -> String {
        self.phrases.join(" ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::TextGenerator;
    use crate::evolve::operators::operator::genome;
    use rand::SeedableRng;

    /// Replies with a fixed text and records what it was asked.
    pub(crate) struct Scripted {
        pub replies: Vec<String>,
        pub asked: Vec<Vec<ChatMessage>>,
    }

    impl TextGenerator for Scripted {
        fn chat(
            &mut self,
            messages: &[ChatMessage],
            _rng: &mut ChaCha8Rng,
        ) -> crate::Result<String> {
            self.asked.push(messages.to_vec());
            let i = (self.asked.len() - 1) % self.replies.len();
            Ok(self.replies[i].clone())
        }
    }

    pub(crate) fn scripted(replies: &[&str]) -> Scripted {
        Scripted {
            replies: replies.iter().map(|s| s.to_string()).collect(),
            asked: Vec::new(),
        }
    }

    #[test]
    fn cleaning_takes_tags_strips_markers_and_rejects_bad_replies() {
        assert_eq!(
            clean_reply("Step 1: ...\n<prompt>Classify the review.</prompt> done").as_deref(),
            Some("Classify the review.")
        );
        assert_eq!(
            clean_reply("  \"Prompt: Tell positive from negative.\"\n\nMore text").as_deref(),
            Some("Tell positive from negative.")
        );
        assert_eq!(
            clean_reply("Final prompt: Decide the sentiment.<|im_end|>junk").as_deref(),
            Some("Decide the sentiment.")
        );
        assert_eq!(
            clean_reply("2. Basic Prompt: Decide the sentiment.").as_deref(),
            Some("Decide the sentiment.")
        );
        assert_eq!(
            clean_reply("Prompt 4: Say positive or negative.").as_deref(),
            Some("Say positive or negative.")
        );
        // A colon inside an instruction is kept.
        assert_eq!(
            clean_reply("Classify the review as one of: positive, negative.").as_deref(),
            Some("Classify the review as one of: positive, negative.")
        );
        assert_eq!(clean_reply("   "), None);
        assert_eq!(clean_reply("Use {input} here."), None);
        assert_eq!(clean_reply(&"word ".repeat(200)), None);
        assert_eq!(
            extract_tagged("a <prompt>x</prompt> b <prompt>y"),
            Some("y")
        );
    }

    #[test]
    fn evo_ga_sends_both_parents_and_keeps_genes_of_the_first() {
        let mut a = genome(&["Classify the review."]);
        a.persona = Some("You are a critic.".into());
        let b = genome(&["Is it positive or negative?"]);
        let mut gen =
            scripted(&["Sure. <prompt>Decide if the review is positive or negative.</prompt>"]);
        let mut ctx = OperatorContext {
            generator: Some(&mut gen),
            ..OperatorContext::default()
        };
        let child = EvoGa
            .apply(&[&a, &b], &mut ctx, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap()
            .expect("applies");
        assert_eq!(
            child.instruction(),
            "You are a critic. Decide if the review is positive or negative."
        );
        drop(ctx);
        let asked = &gen.asked[0][1].content;
        assert!(
            asked.contains("Prompt 1: Classify the review.")
                && asked.contains("Prompt 2: Is it positive or negative?")
        );
    }

    #[test]
    fn evo_de_uses_the_best_prompt_and_rejects_empty_replies() {
        let (x, a, b) = (genome(&["X."]), genome(&["A."]), genome(&["B."]));
        let mut gen = scripted(&["<prompt></prompt>", "<prompt>New one.</prompt>"]);
        let mut ctx = OperatorContext {
            generator: Some(&mut gen),
            best: vec![genome(&["Best."])],
            ..OperatorContext::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            EvoDe.apply(&[&x, &a, &b], &mut ctx, &mut rng).unwrap(),
            None
        );
        assert_eq!(ctx.rejected_replies, 1);
        let child = EvoDe.apply(&[&x, &a, &b], &mut ctx, &mut rng).unwrap();
        assert_eq!(child, Some(genome(&["New one."])));
        drop(ctx);
        assert!(gen.asked[0][1].content.contains("Prompt 3: Best."));
        assert!(gen.asked[0][1].content.contains("Basic Prompt: X."));
    }

    #[test]
    fn without_a_generator_model_operators_do_not_apply() {
        let mut ctx = OperatorContext::default();
        let (a, b) = (genome(&["A."]), genome(&["B."]));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(EvoGa.apply(&[&a, &b], &mut ctx, &mut rng).unwrap(), None);
        assert_eq!(
            super::super::Paraphrase
                .apply(&[&a], &mut ctx, &mut rng)
                .unwrap(),
            None
        );
    }
}
