//! An agent version's settings as the API accepts them: the meta-prompt, sampling
//! and training hyperparameters, each checked against its range so a bad value is a
//! 422 that names the field and the limit, never a surprise inside a match.

pub use agents::SamplingParams;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Longest meta-prompt, characters.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// Longest agent name, characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Training settings for the agent's DPO runs on its LoRA adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSettings {
    /// LoRA rank, 1 to 64.
    pub lora_rank: u32,
    /// LoRA alpha in (0, 256].
    pub lora_alpha: f32,
    /// Learning rate in (0, 0.01].
    pub learning_rate: f64,
    /// DPO beta in (0, 1].
    pub dpo_beta: f64,
    /// Train after this many new preference pairs, 1 to 10000.
    pub train_every_pairs: u32,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        TrainingSettings {
            lora_rank: 8,
            lora_alpha: 16.0,
            learning_rate: 5e-5,
            dpo_beta: 0.1,
            train_every_pairs: 64,
        }
    }
}

fn check(ok: bool, field: &str, rule: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, rule))
    }
}

/// The sampling settings' ranges (one definition, in `agents`), as a 422 that names the
/// field and the limit.
pub fn check_sampling(s: &SamplingParams) -> Result<()> {
    s.check().map_err(|e| Error::invalid(e.field, e.rule))
}

impl TrainingSettings {
    /// Every range check, first failure first.
    pub fn validate(&self) -> Result<()> {
        check(
            (1..=64).contains(&self.lora_rank),
            "training.lora_rank",
            "must be within [1, 64]",
        )?;
        let a = self.lora_alpha;
        check(
            a.is_finite() && a > 0.0 && a <= 256.0,
            "training.lora_alpha",
            "must be within (0, 256]",
        )?;
        let lr = self.learning_rate;
        check(
            lr.is_finite() && lr > 0.0 && lr <= 0.01,
            "training.learning_rate",
            "must be within (0, 0.01]",
        )?;
        let b = self.dpo_beta;
        check(
            b.is_finite() && b > 0.0 && b <= 1.0,
            "training.dpo_beta",
            "must be within (0, 1]",
        )?;
        check(
            (1..=10_000).contains(&self.train_every_pairs),
            "training.train_every_pairs",
            "must be within [1, 10000]",
        )
    }
}

/// Checks a meta-prompt's length.
pub fn validate_prompt(prompt: &str) -> Result<()> {
    check(
        prompt.chars().count() <= MAX_PROMPT_CHARS,
        "system_prompt",
        "must be at most 4000 characters",
    )
}

/// Checks an agent name.
pub fn validate_name(name: &str) -> Result<()> {
    let n = name.trim().chars().count();
    check(
        (1..=MAX_NAME_CHARS).contains(&n),
        "name",
        "must be 1 to 64 characters",
    )?;
    validate_display_text("name", name)
}

/// Whether `c` is a control character or one that reorders or hides text
/// (bidirectional overrides and isolates, zero-width marks): such a character in a name
/// can make it read as another (a "Trojan Source" spoof of a rival's name).
pub fn is_deceptive_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}'
        )
}

/// Refuses text shown to other users that holds a control, bidirectional-override or
/// zero-width character, naming `field` and the character.
pub fn validate_display_text(field: &str, text: &str) -> Result<()> {
    match text.chars().find(|&c| is_deceptive_char(c)) {
        Some(c) => Err(crate::Error::invalid(
            field,
            format!(
                "must not contain control, bidirectional-override or zero-width characters (found U+{:04X})",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// Checks a base model identifier (a catalogue name or a file hash).
pub fn validate_base_model(model: &str) -> Result<()> {
    let ok = (1..=128).contains(&model.len())
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b));
    check(
        ok,
        "base_model",
        "must be 1 to 128 characters of letters, digits and ._-:/",
    )
}

/// Reads stored settings JSON, falling back to defaults for missing keys.
pub fn stored<T: for<'de> Deserialize<'de> + Default>(json: &str) -> T {
    serde_json::from_str(json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trainer_reads_what_the_studio_writes() {
        let t = TrainingSettings {
            lora_rank: 4,
            train_every_pairs: 12,
            ..TrainingSettings::default()
        };
        let stored = serde_json::to_string(&t).unwrap();
        let policy = platform::learning::TrainingPolicy::from_json(&stored).unwrap();
        assert_eq!(policy.lora_rank, 4);
        assert_eq!(policy.train_every_pairs, 12);
        assert_eq!(policy.dpo().beta, t.dpo_beta);
        assert_eq!(policy.dpo().learning_rate, t.learning_rate);
    }

    #[test]
    fn ranges_name_the_field() {
        let mut s = SamplingParams::default();
        assert!(check_sampling(&s).is_ok());
        s.temperature = 2.5;
        let Err(Error::Invalid { field, .. }) = check_sampling(&s) else {
            panic!()
        };
        assert_eq!(field, "sampling.temperature");
        s.temperature = 1.0;
        s.top_p = 0.0;
        assert!(check_sampling(&s).is_err());
        s.top_p = 1.0;
        s.max_new_tokens = 0;
        assert!(check_sampling(&s).is_err());
        assert!(TrainingSettings::default().validate().is_ok());
        let t = TrainingSettings {
            lora_rank: 0,
            ..Default::default()
        };
        assert!(t.validate().is_err());
        assert!(validate_prompt(&"x".repeat(MAX_PROMPT_CHARS + 1)).is_err());
        assert!(validate_base_model("smollm2-135m").is_ok());
        assert!(validate_base_model("bad model").is_err());
    }
}
