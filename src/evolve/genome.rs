//! The genome: a prompt as genes (an optional persona, instruction phrases, an optional output
//! constraint and few-shot demonstrations as train example ids), and its rendering back to text.

use serde::{Deserialize, Serialize};

use super::train::TrainPool;

/// A prompt as genes. Rendered as `persona phrases constraint`, then the demonstrations, one
/// blank line apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Genome {
    /// The instruction phrases in order; each is trimmed and keeps its trailing punctuation.
    pub phrases: Vec<String>,
    /// A role the model is asked to play ("You are an expert film critic.").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// An output constraint ("Answer with one word.").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// Few-shot demonstrations: ids of train pool examples ([`TrainPool`]), in the order shown;
    /// rendered only when the prompt is (so chat tasks can show them as turns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demos: Vec<usize>,
}

/// Words ending in '.' that do not end a sentence (compared lower-case).
const ABBREVIATIONS: &[&str] = &[
    "mr.", "mrs.", "ms.", "dr.", "prof.", "vs.", "cf.", "approx.",
];

impl Genome {
    /// Splits a prompt into phrases.
    ///
    /// A phrase ends after `.`, `?`, `!`, `;`, `:` or `,` when the next character is
    /// whitespace (or the text ends), so `3.5` and `a,b` stay whole. Nothing is split
    /// inside double quotes or brackets (`['negative', 'positive']`), nor after
    /// abbreviations such as `e.g.`, `i.e.` or `Dr.`. A closing quote or bracket right
    /// after such punctuation ends the phrase too (`He said "stop." Then`).
    /// Phrases are trimmed; an empty or blank prompt gives an empty genome.
    pub fn parse(prompt: &str) -> Genome {
        let chars: Vec<(usize, char)> = prompt.char_indices().collect();
        let mut phrases = Vec::new();
        let mut start = 0usize; // byte offset where the current phrase begins
        let mut depth = 0usize; // bracket nesting
        let mut in_quote = false;

        for (k, &(pos, c)) in chars.iter().enumerate() {
            let at_gap = chars.get(k + 1).is_none_or(|&(_, n)| n.is_whitespace());
            let after_boundary = k > 0 && is_boundary(chars[k - 1].1);
            let split = match c {
                '"' => {
                    in_quote = !in_quote;
                    !in_quote && depth == 0 && at_gap && after_boundary
                }
                '\u{201C}' => {
                    in_quote = true;
                    false
                }
                '\u{201D}' => {
                    in_quote = false;
                    depth == 0 && at_gap && after_boundary
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    false
                }
                ')' | ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    depth == 0 && !in_quote && at_gap && after_boundary
                }
                c if is_boundary(c) && depth == 0 && !in_quote && at_gap => {
                    !(c == '.' && ends_with_abbreviation(&prompt[start..pos + 1]))
                }
                _ => false,
            };
            if split {
                let end = pos + c.len_utf8();
                push_trimmed(&mut phrases, &prompt[start..end]);
                start = end;
            }
        }
        push_trimmed(&mut phrases, &prompt[start..]);
        Genome {
            phrases,
            ..Genome::default()
        }
    }

    /// The prompt text: the [`Genome::instruction`], then each demonstration as `train`
    /// renders it, after a blank line.
    pub fn render(&self, train: &TrainPool) -> String {
        let mut text = self.instruction();
        for demo in train.demonstrations(&self.demos) {
            text.push_str("\n\n");
            text.push_str(demo);
        }
        text
    }

    /// True when the genome has no instruction phrase (personas, constraints and demos alone
    /// do not make a prompt).
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The instruction alone, without demonstrations: persona, phrases and constraint joined
    /// with single spaces.
    pub fn instruction(&self) -> String {
        let words: Vec<&str> = self
            .persona
            .iter()
            .map(String::as_str)
            .chain(self.phrases.iter().map(String::as_str))
            .chain(self.constraint.iter().map(String::as_str))
            .collect();
        words.join(" ")
    }

    /// Number of phrases.
    pub fn len(&self) -> usize {
        self.phrases.len()
    }
}

/// Punctuation after which a phrase may end.
fn is_boundary(c: char) -> bool {
    matches!(c, '.' | '?' | '!' | ';' | ':' | ',')
}

/// True when `text` (which ends in '.') ends with an abbreviation like "e.g." or "Dr.".
fn ends_with_abbreviation(text: &str) -> bool {
    let word = text.split_whitespace().next_back().unwrap_or("");
    let word = word
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    if ABBREVIATIONS.contains(&word.as_str()) {
        return true;
    }
    // Dotted initials: "e.g.", "i.e.", "u.s." (two or more single letters each followed by '.').
    let segments: Vec<&str> = word.split('.').collect();
    segments.len() >= 3
        && segments.last() == Some(&"")
        && segments[..segments.len() - 1]
            .iter()
            .all(|s| s.chars().count() == 1 && s.chars().all(char::is_alphabetic))
}

fn push_trimmed(phrases: &mut Vec<String>, text: &str) {
    let text = text.trim();
    if !text.is_empty() {
        phrases.push(text.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrases(p: &str) -> Vec<String> {
        Genome::parse(p).phrases
    }

    #[test]
    fn real_prompts_round_trip_and_split_sensibly() {
        let cases: [(&str, &[&str]); 4] = [
            (
                "Please perform Sentiment Classification task. Given the sentence, assign a sentiment label from ['negative', 'positive']. Return label only without any other text.",
                &[
                    "Please perform Sentiment Classification task.",
                    "Given the sentence,",
                    "assign a sentiment label from ['negative', 'positive'].",
                    "Return label only without any other text.",
                ],
            ),
            (
                "Your task is to classify the comment \"positive\" or \"negative\".",
                &["Your task is to classify the comment \"positive\" or \"negative\"."],
            ),
            (
                "Given a sentence, classify it as either positive or negative sentiment.",
                &[
                    "Given a sentence,",
                    "classify it as either positive or negative sentiment.",
                ],
            ),
            (
                "Is the sentiment of this movie review positive or negative?",
                &["Is the sentiment of this movie review positive or negative?"],
            ),
        ];
        for (prompt, expected) in cases {
            let g = Genome::parse(prompt);
            assert_eq!(g.phrases, expected, "split of {prompt:?}");
            assert_eq!(g.instruction(), prompt, "round trip of {prompt:?}");
            assert_eq!(g.len(), expected.len());
        }
    }

    #[test]
    fn empty_and_blank_prompts_give_empty_genome() {
        assert!(Genome::parse("").is_empty());
        assert!(Genome::parse("   \n ").is_empty());
        assert_eq!(Genome::parse("").instruction(), "");
    }

    #[test]
    fn numbers_abbreviations_and_quotes_stay_whole() {
        assert_eq!(
            phrases("Use a threshold of 3.5 here. Done."),
            ["Use a threshold of 3.5 here.", "Done."]
        );
        assert_eq!(
            phrases("Answer with a label, e.g. positive. Be brief."),
            ["Answer with a label,", "e.g. positive.", "Be brief."]
        );
        assert_eq!(
            phrases("Ask Dr. Smith i.e. the expert."),
            ["Ask Dr. Smith i.e. the expert."]
        );
        assert_eq!(
            phrases("Say \"yes, no. maybe\" now."),
            ["Say \"yes, no. maybe\" now."]
        );
        assert_eq!(
            phrases("He said \"stop.\" Then go."),
            ["He said \"stop.\"", "Then go."]
        );
        assert_eq!(
            phrases("Labels (a, b. c) apply. Ok"),
            ["Labels (a, b. c) apply.", "Ok"]
        );
        assert_eq!(phrases("Format: a,b;c"), ["Format:", "a,b;c"]);
        assert_eq!(
            phrases("Why? Because! Yes; no"),
            ["Why?", "Because!", "Yes;", "no"]
        );
    }

    #[test]
    fn genes_render_in_order() {
        let mut g = Genome::parse("Classify the review. Answer now.");
        g.persona = Some("You are a critic.".into());
        g.constraint = Some("Answer with one word.".into());
        let train = TrainPool::from_triples(&[
            ("bad", "negative", "Review: bad\nSentiment: negative"),
            ("good", "positive", "Review: good\nSentiment: positive"),
        ]);
        g.demos = vec![1];
        assert_eq!(
            g.render(&train),
            "You are a critic. Classify the review. Answer now. Answer with one word.\n\nReview: good\nSentiment: positive"
        );
        assert_eq!(
            g.instruction(),
            "You are a critic. Classify the review. Answer now. Answer with one word."
        );
    }

    #[test]
    fn extra_whitespace_is_normalised_at_phrase_boundaries() {
        let g = Genome::parse("  One.   Two,\n three  ");
        assert_eq!(g.phrases, ["One.", "Two,", "three"]);
        assert_eq!(g.instruction(), "One. Two, three");
        assert_eq!(Genome::parse(&g.instruction()), g);
    }
}
