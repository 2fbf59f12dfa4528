//! Prompt templates with `{prompt}` and `{input}` placeholders, split around `{input}` so that the
//! text before it can be computed once per prompt and reused for every example.

/// A validated template.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Template {
    text: String,
}

/// Why a template is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// No `{input}` placeholder: examples would never reach the model.
    MissingInput,
    /// `{input}` appears more than once.
    RepeatedInput,
    /// `{prompt}` appears after `{input}` (the prompt must come first to share its computation).
    PromptAfterInput,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TemplateError::MissingInput => {
                "template has no {input} placeholder: add {input} where each example's text goes"
            }
            TemplateError::RepeatedInput => {
                "template has {input} more than once: keep a single {input}"
            }
            TemplateError::PromptAfterInput => {
                "template has {prompt} after {input}: put {prompt} before {input}"
            }
        })
    }
}

impl Template {
    /// Checks and wraps a template text.
    pub fn new(text: &str) -> Result<Self, TemplateError> {
        let inputs = text.matches("{input}").count();
        if inputs == 0 {
            return Err(TemplateError::MissingInput);
        }
        if inputs > 1 {
            return Err(TemplateError::RepeatedInput);
        }
        let input_at = text.find("{input}").unwrap_or(0);
        if text[input_at..].contains("{prompt}") {
            return Err(TemplateError::PromptAfterInput);
        }
        Ok(Self {
            text: text.to_string(),
        })
    }

    /// The raw template text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The full text for one prompt and one input.
    pub fn render(&self, prompt: &str, input: &str) -> String {
        let (before, after) = self.split(prompt);
        format!("{before}{input}{after}")
    }

    /// The text before and after `{input}` for this prompt.
    pub fn split(&self, prompt: &str) -> (String, String) {
        let at = self.text.find("{input}").unwrap_or(self.text.len());
        let before = self.text[..at].replace("{prompt}", prompt);
        let after = self.text[at + "{input}".len()..].to_string();
        (before, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_splits_around_input() {
        let t = Template::new("{prompt}\n\nReview: {input}\nSentiment:").unwrap();
        assert_eq!(t.render("P", "good"), "P\n\nReview: good\nSentiment:");
        assert_eq!(
            t.split("P"),
            ("P\n\nReview: ".to_string(), "\nSentiment:".to_string())
        );
    }

    #[test]
    fn rejects_templates_without_input() {
        assert_eq!(
            Template::new("{prompt} Sentiment:"),
            Err(TemplateError::MissingInput)
        );
        assert_eq!(
            Template::new("{input} {input}"),
            Err(TemplateError::RepeatedInput)
        );
        assert_eq!(
            Template::new("{input} {prompt}"),
            Err(TemplateError::PromptAfterInput)
        );
    }
}
