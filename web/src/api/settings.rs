//! An agent version's settings as the API accepts them: the meta-prompt, sampling
//! and training hyperparameters, each checked against its range so a bad value is a
//! 422 that names the field and the limit, never a surprise inside a match.

pub use agents::SamplingParams;
pub use platform::learning::TrainingPolicy;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Longest meta-prompt, characters.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// Longest agent name, characters.
pub const MAX_NAME_CHARS: usize = 64;

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

/// The training settings' ranges (one definition, `TrainingPolicy::check` in
/// `platform`), as a 422 that names the field and the limit.
pub fn check_training(t: &TrainingPolicy) -> Result<()> {
    t.check()
        .map_err(|e| Error::invalid(format!("training.{}", e.field), e.rule))
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
        let t = TrainingPolicy {
            lora_rank: 4,
            train_every_pairs: 12,
            min_margin: 0.2,
            ..TrainingPolicy::default()
        };
        let stored = serde_json::to_string(&t).unwrap();
        let policy = TrainingPolicy::from_json(&stored).unwrap();
        assert_eq!(policy, t, "one type, written and read back whole");
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
        assert!(check_training(&TrainingPolicy::default()).is_ok());
        let t = TrainingPolicy {
            lora_rank: 0,
            ..Default::default()
        };
        let Err(Error::Invalid { field, .. }) = check_training(&t) else {
            panic!()
        };
        assert_eq!(field, "training.lora_rank");
        // The trainer refuses what the API refuses: the same ranges.
        let stored = serde_json::to_string(&t).unwrap();
        let refused = TrainingPolicy::from_json(&stored).unwrap_err().to_string();
        assert!(refused.contains("training.lora_rank"), "{refused}");
        assert!(validate_prompt(&"x".repeat(MAX_PROMPT_CHARS + 1)).is_err());
        assert!(validate_base_model("smollm2-135m").is_ok());
        assert!(validate_base_model("bad model").is_err());
    }
}
