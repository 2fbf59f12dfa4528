//! A model's chat template read from its files without loading its weights: for a model that is
//! scored elsewhere (an inference server) but whose chat rendering promptevo does itself.

use std::path::Path;

use super::generate::ChatTemplate;
use super::gguf::GgufFile;
use super::tokenizer;
use crate::error::{Error, Result};

/// A chat template and the text its model's tokenisation puts first on its own (the BOS
/// token's text when the model adds BOS; None otherwise).
pub(crate) struct TemplateFile {
    /// The template, ready to render.
    pub template: ChatTemplate,
    /// The BOS text the model's tokeniser adds by itself, if any.
    pub leading: Option<String>,
}

/// Reads the chat template of the model at `path`: a GGUF file (`tokenizer.chat_template`), a
/// Hugging Face model folder or its `tokenizer_config.json` (`chat_template`), or a Jinja text
/// file holding the template alone (no BOS/EOS tokens known). One error naming the file when it
/// has no template.
pub(crate) fn read_chat_template(path: &Path) -> Result<TemplateFile> {
    let missing = || {
        Error::chat_template(
            path,
            "it holds no chat template (GGUF key tokenizer.chat_template, tokenizer_config.json's chat_template): give the served model's GGUF, model folder, tokenizer_config.json or a Jinja file",
        )
    };
    if !path.exists() {
        return Err(Error::chat_template(
            path,
            "no such file or folder: give the served model's GGUF, model folder, tokenizer_config.json or a Jinja file",
        ));
    }
    if path.is_dir() {
        let (tok, special, source) = tokenizer::load_folder(path)?;
        return with_tokenizer(path, source.ok_or_else(missing)?, &tok, &special);
    }
    if is_gguf(path) {
        let gguf = GgufFile::open(path)?;
        let source = gguf
            .string("tokenizer.chat_template")
            .map_err(|_| missing())?;
        let (tok, special) = tokenizer::load(&gguf)?;
        return with_tokenizer(path, source, &tok, &special);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::chat_template(path, format!("cannot read it: {e}")))?;
    if let Ok(config) = serde_json::from_str::<serde_json::Value>(&text) {
        // tokenizer_config.json: the template and the special tokens' texts.
        let source = config["chat_template"].as_str().ok_or_else(missing)?;
        let token = |key: &str| {
            let t = &config[key];
            t.as_str()
                .or(t["content"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let template = ChatTemplate::new(
            source.to_string(),
            token("bos_token"),
            token("eos_token"),
            path.into(),
        )?;
        let add_bos = config["add_bos_token"].as_bool().unwrap_or(false);
        let leading = add_bos.then(|| token("bos_token"));
        return Ok(TemplateFile { template, leading });
    }
    // A Jinja file: the template alone.
    let template = ChatTemplate::new(text, String::new(), String::new(), path.into())?;
    Ok(TemplateFile {
        template,
        leading: None,
    })
}

/// The template `source` of the model at `path`, with BOS/EOS texts from its tokenizer and the
/// BOS text as leading when the model adds BOS.
fn with_tokenizer(
    path: &Path,
    source: String,
    tok: &tokenizers::Tokenizer,
    special: &tokenizer::SpecialTokens,
) -> Result<TemplateFile> {
    let text = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i)).unwrap_or_default();
    let template = ChatTemplate::new(source, text(special.bos), text(special.eos), path.into())?;
    let leading = special.add_bos.then(|| text(special.bos));
    Ok(TemplateFile { template, leading })
}

/// Whether the file starts with GGUF's magic.
fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokenizer_config_gives_the_template_and_the_bos_it_adds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &path,
            r#"{"chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}",
                "bos_token": {"content": "<s>"}, "eos_token": "</s>", "add_bos_token": true}"#,
        )
        .unwrap();
        let file = read_chat_template(&path).unwrap();
        assert_eq!(file.leading.as_deref(), Some("<s>"));
        let messages = vec![crate::chat::ChatMessage::user("hi")];
        assert_eq!(
            file.template.render(&messages, true).unwrap(),
            "<s>[user] hi\n[assistant] "
        );
    }

    #[test]
    fn a_jinja_file_is_the_template_alone_and_a_file_without_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let jinja = dir.path().join("chat.jinja");
        std::fs::write(&jinja, "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
        let file = read_chat_template(&jinja).unwrap();
        assert!(file.leading.is_none());
        let none = dir.path().join("tokenizer_config.json");
        std::fs::write(&none, r#"{"bos_token": "<s>"}"#).unwrap();
        let err = read_chat_template(&none).err().unwrap().to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("no chat template"),
            "{err}"
        );
        let err = read_chat_template(&dir.path().join("absent.gguf"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("absent.gguf") && err.contains("no such file"),
            "{err}"
        );
    }
}
