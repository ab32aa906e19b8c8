//! The tokenizer, built from the GGUF file's own metadata (no tokenizer.json), and the
//! chat template that turns a system prompt plus a task into the model's prompt text.

use crate::error::{AgentError, Result};
use crate::gguf::GgufFile;
use candle_core::quantized::gguf_file::Value;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::tokenizer::SplitDelimiterBehavior;
use tokenizers::{AddedToken, Tokenizer};

/// Qwen2's pre-tokenizer split (one digit at a time, case-insensitive contractions).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How messages are laid out as prompt text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`, used by SmolLM2 and Qwen.
    ChatMl,
    /// System text, a blank line, then the task (for models without chat tokens).
    Plain,
}

/// A byte-level BPE tokenizer plus the model's special tokens and chat template.
#[derive(Clone)]
pub struct ChatTokenizer {
    inner: Tokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    bos_id: Option<u32>,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("template", &self.template)
            .finish()
    }
}

fn tok_err(path: &Path, detail: impl std::fmt::Display) -> AgentError {
    AgentError::Tokenizer {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn string_array(gguf: &GgufFile, key: &str) -> Result<Vec<String>> {
    let path = gguf.path();
    let arr = gguf
        .meta(key)?
        .to_vec()
        .map_err(|e| tok_err(path, format!("`{key}`: {e}")))?;
    arr.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(tok_err(path, format!("`{key}` holds {other:?}"))),
        })
        .collect()
}

fn meta_u32(gguf: &GgufFile, key: &str) -> Option<u32> {
    let v = gguf.content().metadata.get(key)?;
    v.to_u32()
        .ok()
        .or_else(|| v.to_u64().ok().map(|n| n as u32))
}

impl ChatTokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata of an opened GGUF file.
    pub(crate) fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path();
        let model = gguf.meta("tokenizer.ggml.model")?.to_string()?.clone();
        if model != "gpt2" {
            return Err(tok_err(
                path,
                format!("tokenizer model `{model}` is not supported (only byte-level BPE `gpt2`)"),
            ));
        }
        let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = string_array(gguf, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(tok_err(path, format!("merge `{m}` has no space"))),
            })
            .collect::<Result<_>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tok_err(path, e))?;
        let mut inner = Tokenizer::new(bpe);
        let pre = gguf
            .content()
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "gpt2".to_string());
        let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
            "qwen2" => {
                inner
                    .with_normalizer(Some(NFC))
                    .map_err(|e| tok_err(path, e))?;
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| tok_err(path, e))?;
                Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, false, false).into(),
                ])
                .into()
            }
            // SmolLM2 (StarCoder-style): every digit alone, then GPT-2 byte level.
            "smollm" | "starcoder" | "refact" => Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            "gpt2" | "default" => ByteLevel::new(false, true, true).into(),
            other => {
                return Err(tok_err(
                    path,
                    format!("pre-tokenizer `{other}` is not supported"),
                ));
            }
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        // Control (3) and user-defined (4) tokens are matched whole in text.
        let types: Vec<u32> = match gguf.content().metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.to_i32().map(|n| n as u32).or_else(|_| v.to_u32()))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| tok_err(path, e))?,
            _ => Vec::new(),
        };
        let specials: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| **t == 3 || **t == 4)
            .map(|(_, tok)| AddedToken::from(tok.clone(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| tok_err(path, e))?;

        let id = |s: &str| vocab_id(&tokens, s);
        let template = if id("<|im_start|>").is_some() && id("<|im_end|>").is_some() {
            ChatTemplate::ChatMl
        } else {
            ChatTemplate::Plain
        };
        let mut stop_ids = Vec::new();
        if let Some(eos) = meta_u32(gguf, "tokenizer.ggml.eos_token_id") {
            stop_ids.push(eos);
        }
        for s in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(i) = id(s)
                && !stop_ids.contains(&i)
            {
                stop_ids.push(i);
            }
        }
        let add_bos = gguf
            .content()
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos_id = if add_bos {
            meta_u32(gguf, "tokenizer.ggml.bos_token_id")
        } else {
            None
        };
        Ok(Self {
            inner,
            template,
            stop_ids,
            bos_id,
        })
    }

    /// Builds the tokenizer from a GGUF file on disk.
    pub fn from_gguf_path(path: &Path) -> Result<Self> {
        Self::from_gguf(&GgufFile::open(path)?)
    }

    /// Encodes text; special tokens written in the text (such as `<|im_start|>`) become
    /// their single ids. Prepends BOS when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| AgentError::Encoding(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.bos_id);
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| AgentError::Encoding(e.to_string()))
    }

    /// Token ids that end a generation (end-of-sequence, `<|im_end|>`, ...).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Number of tokens, special ones included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The prompt text for a system prompt plus one user task, ending where the
    /// assistant's answer starts.
    pub fn chat_prompt(&self, system: &str, user: &str) -> String {
        render_chat(self.template, system, user)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

impl ChatTokenizer {
    /// A byte-level tokenizer of `n` ids (at most 256) without merges or stop tokens,
    /// for tests and benchmarks of the machinery on random-weight models
    /// ([`crate::Model::random`]): id `i` is the byte `(32 + i) % 256`, so the first 96
    /// are printable ASCII and 256 cover every byte (any text encodes).
    pub fn byte_level(n: usize) -> Self {
        let n = n.min(256);
        let vocab: Vocab = (0..n as u32)
            .map(|i| (byte_char(((32 + i) % 256) as u8).to_string(), i))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, Vec::new())
            .build()
            .expect("valid bpe");
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        Self {
            inner,
            template: ChatTemplate::Plain,
            stop_ids: Vec::new(),
            bos_id: None,
        }
    }

    /// [`ChatTokenizer::byte_level`], as the unit tests call it.
    #[cfg(test)]
    pub(crate) fn for_tests(n: usize) -> Self {
        Self::byte_level(n)
    }

    /// The same tokenizer with `id` as its end-of-turn token.
    #[cfg(test)]
    pub(crate) fn with_stop_id(mut self, id: u32) -> Self {
        self.stop_ids = vec![id];
        self
    }
}

/// The character byte-level BPE writes for `b` (GPT-2's table): printable Latin-1
/// bytes stand for themselves, the other 68 take U+0100 onwards in byte order.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let shifted = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + shifted).expect("a valid code point")
}

fn vocab_id(tokens: &[String], s: &str) -> Option<u32> {
    tokens.iter().position(|t| t == s).map(|i| i as u32)
}

/// Renders a system prompt plus one user turn with `template`, open for the assistant.
pub fn render_chat(template: ChatTemplate, system: &str, user: &str) -> String {
    match template {
        ChatTemplate::ChatMl => {
            let mut s = String::new();
            if !system.is_empty() {
                s.push_str("<|im_start|>system\n");
                s.push_str(system);
                s.push_str("<|im_end|>\n");
            }
            s.push_str("<|im_start|>user\n");
            s.push_str(user);
            s.push_str("<|im_end|>\n<|im_start|>assistant\n");
            s
        }
        ChatTemplate::Plain => {
            if system.is_empty() {
                format!("{user}\n")
            } else {
                format!("{system}\n\n{user}\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_level_tokenizer_covers_every_byte_and_keeps_its_ascii_ids() {
        let t = ChatTokenizer::byte_level(256);
        let text = "Line one\n\tcafé ✓";
        let ids = t.encode(text).unwrap();
        assert_eq!(ids.len(), text.len(), "one id per byte");
        assert_eq!(t.decode(&ids).unwrap(), text);
        // The ASCII ids are the ones the 96-id tokenizer always had.
        assert_eq!(t.encode("A ~").unwrap(), vec![33, 0, 94]);
        assert_eq!(
            ChatTokenizer::byte_level(96).encode("A ~").unwrap(),
            vec![33, 0, 94]
        );
        assert_eq!(byte_char(b' '), '\u{120}');
        assert_eq!(byte_char(127), '\u{121}');
        assert_eq!(byte_char(0xAD), '\u{143}');
    }

    #[test]
    fn chatml_layout() {
        let s = render_chat(ChatTemplate::ChatMl, "Be brief.", "Hi");
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = render_chat(ChatTemplate::ChatMl, "", "Hi");
        assert!(s.starts_with("<|im_start|>user\nHi"));
    }
}
