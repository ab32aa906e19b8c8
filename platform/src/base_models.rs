//! The base models agents choose from (issue 21 item 5): the catalogue's SmolLM2, always
//! served, and any GGUF file the operator lists under `[models.base_models]`, each
//! pinned by its sha256. An agent's `base_model` names one of them; the menu
//! ([`BaseModelMenu`]) is known from the configuration alone (the web server validates
//! against it without loading weights), and [`AgentModels`] holds them loaded, for the
//! engine, the trainer and the verifier.

use std::path::PathBuf;
use std::sync::Arc;

use agents::{ChatTokenizer, Model, is_hash};
use serde::Serialize;

pub use crate::config::BaseModelFile;

/// The catalogue name of the default base model.
pub const DEFAULT_BASE_MODEL: &str = "smollm2-135m-instruct";

/// Another name of the default, the one agents were created with before the menu
/// existed; it resolves to [`DEFAULT_BASE_MODEL`].
pub(crate) const DEFAULT_BASE_MODEL_ALIAS: &str = "smollm2-135m";

/// A base model an agent may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseModelChoice {
    /// The name agents give as `base_model`.
    pub name: String,
    /// The weights file's sha256.
    pub sha256: String,
    /// What it is.
    pub description: String,
    /// The file, for operator-listed models (`None`: the catalogue's, fetched into the
    /// model cache).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// Checks the `[models.base_models]` entries: names of 1 to 64 characters of
/// lower-case letters, digits and `._-` that are not the default's, a path, and a
/// sha256 of 64 lower-case hex digits. The error names the key.
pub fn validate_files(
    files: &std::collections::BTreeMap<String, BaseModelFile>,
) -> Result<(), String> {
    for (name, file) in files {
        let key = format!("models.base_models.{name}");
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !name_ok {
            return Err(format!(
                "{key}: a name must be 1 to 64 characters of lower-case letters, digits and ._-"
            ));
        }
        if name == DEFAULT_BASE_MODEL || name == DEFAULT_BASE_MODEL_ALIAS {
            return Err(format!(
                "{key}: {name:?} is the catalogue's default base model, always served; \
                 choose another name"
            ));
        }
        if file.path.as_os_str().is_empty() {
            return Err(format!("{key}.path: must name a GGUF file"));
        }
        if !is_hash(&file.sha256) {
            return Err(format!(
                "{key}.sha256: must be 64 lower-case hex digits (the file's sha256)"
            ));
        }
    }
    Ok(())
}

/// The base models this deployment serves, default first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseModelMenu {
    choices: Vec<BaseModelChoice>,
}

impl Default for BaseModelMenu {
    /// SmolLM2 alone.
    fn default() -> BaseModelMenu {
        BaseModelMenu::from_config(&crate::config::ModelsConfig {
            dir: std::path::PathBuf::new(),
            python: String::new(),
            pip_args: Vec::new(),
            base_models: Default::default(),
        })
    }
}

impl BaseModelMenu {
    /// The catalogue's default and the configured files, as configured (nothing is
    /// read: [`AgentModels`] checks each file's hash when it loads it).
    pub fn from_config(models: &crate::config::ModelsConfig) -> BaseModelMenu {
        let smollm = &*models::SMOLLM2;
        let mut choices = vec![BaseModelChoice {
            name: DEFAULT_BASE_MODEL.into(),
            sha256: smollm.files[0].sha256.clone(),
            description: smollm.description.clone(),
            path: None,
        }];
        for (name, file) in &models.base_models {
            choices.push(BaseModelChoice {
                name: name.clone(),
                sha256: file.sha256.clone(),
                // Shown to anyone (the API, the studio): never the file's path.
                description: if file.description.is_empty() {
                    format!("GGUF model {name}")
                } else {
                    file.description.clone()
                },
                path: Some(file.path.clone()),
            });
        }
        BaseModelMenu { choices }
    }

    /// A menu of these choices (the first is the default).
    pub(crate) fn of(choices: Vec<BaseModelChoice>) -> BaseModelMenu {
        assert!(!choices.is_empty(), "a menu serves at least one model");
        BaseModelMenu { choices }
    }

    /// Every choice, default first.
    pub fn choices(&self) -> &[BaseModelChoice] {
        &self.choices
    }

    /// The default, which the LLM judge also runs on.
    pub fn default_choice(&self) -> &BaseModelChoice {
        &self.choices[0]
    }

    /// The choice `name` names (the default's alias included), or an error that lists
    /// the served names.
    pub fn resolve(&self, name: &str) -> Result<&BaseModelChoice, String> {
        let wanted = if name == DEFAULT_BASE_MODEL_ALIAS {
            DEFAULT_BASE_MODEL
        } else {
            name
        };
        self.choices
            .iter()
            .find(|c| c.name == wanted)
            .ok_or_else(|| {
                format!(
                    "base model {name:?} is not served here (served: {})",
                    self.names().join(", ")
                )
            })
    }

    /// The served names.
    pub fn names(&self) -> Vec<&str> {
        self.choices.iter().map(|c| c.name.as_str()).collect()
    }
}

/// One served base model, loaded.
#[derive(Clone)]
pub struct LoadedModel {
    /// What it is.
    pub choice: BaseModelChoice,
    /// Its weights.
    pub model: Arc<Model>,
    /// Its tokenizer (from the GGUF file).
    pub tokenizer: Arc<ChatTokenizer>,
}

/// The agents' base models, loaded once and shared by the engine, the trainer and the
/// verifier, default first.
#[derive(Clone)]
pub struct AgentModels {
    loaded: Vec<LoadedModel>,
    menu: BaseModelMenu,
}

impl AgentModels {
    /// The given models, the first being the default.
    pub fn new(loaded: Vec<LoadedModel>) -> AgentModels {
        let menu = BaseModelMenu::of(loaded.iter().map(|l| l.choice.clone()).collect());
        AgentModels { loaded, menu }
    }

    /// One model, served under the default's name (tests and benchmarks that build
    /// the model in memory).
    pub fn single(model: Arc<Model>, tokenizer: Arc<ChatTokenizer>) -> AgentModels {
        let sha256 = model
            .source_sha256()
            .map(str::to_string)
            .unwrap_or_else(|| models::SMOLLM2.files[0].sha256.clone());
        AgentModels::new(vec![LoadedModel {
            choice: BaseModelChoice {
                name: DEFAULT_BASE_MODEL.into(),
                sha256,
                description: "the default base model".into(),
                path: None,
            },
            model,
            tokenizer,
        }])
    }

    /// The menu they serve.
    pub fn menu(&self) -> &BaseModelMenu {
        &self.menu
    }

    /// Every loaded model, default first.
    pub fn all(&self) -> &[LoadedModel] {
        &self.loaded
    }

    /// The default model.
    pub(crate) fn default_model(&self) -> &LoadedModel {
        &self.loaded[0]
    }

    /// The model `name` names (the default's alias included; empty is the default).
    pub fn get(&self, name: &str) -> Result<&LoadedModel, String> {
        if name.is_empty() {
            return Ok(self.default_model());
        }
        let choice = self.menu.resolve(name)?;
        Ok(self
            .loaded
            .iter()
            .find(|l| l.choice.name == choice.name)
            .expect("the menu lists the loaded models"))
    }

    /// The model a training run named (by its weights' sha256) when one is served,
    /// else the default, whose hash then fails the verifier's base-model check by name.
    pub fn for_run(&self, sha256: &str) -> &LoadedModel {
        self.by_sha256(sha256).unwrap_or(self.default_model())
    }

    /// The model whose weights hash to `sha256`, if one is served.
    pub(crate) fn by_sha256(&self, sha256: &str) -> Option<&LoadedModel> {
        self.loaded.iter().find(|l| l.choice.sha256 == sha256)
    }
}

/// Loads the configured files of `menu` (the default is loaded by the caller, who
/// shares it with the judge): each file must exist, parse as a llama or qwen2 GGUF
/// file and hash to its pinned sha256. The error names the setting.
pub(crate) fn load_listed(menu: &BaseModelMenu) -> Result<Vec<LoadedModel>, String> {
    let mut out = Vec::new();
    for choice in &menu.choices()[1..] {
        let key = format!("models.base_models.{}", choice.name);
        let path = choice
            .path
            .as_ref()
            .ok_or_else(|| format!("{key}: no file"))?;
        let (model, tokenizer) =
            Model::load(path).map_err(|e| format!("{key}.path {}: {e}", path.display()))?;
        let actual = model
            .source_sha256()
            .ok_or_else(|| format!("{key}.path {}: could not be hashed", path.display()))?;
        if actual != choice.sha256 {
            return Err(format!(
                "{key}.sha256: {} has sha256 {actual}, the configuration pins {}",
                path.display(),
                choice.sha256
            ));
        }
        tracing::info!(name = %choice.name, path = %path.display(), "base model loaded");
        out.push(LoadedModel {
            choice: choice.clone(),
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(files: BTreeMap<String, BaseModelFile>) -> crate::config::ModelsConfig {
        crate::config::ModelsConfig {
            dir: "/tmp/m".into(),
            python: "python3".into(),
            pip_args: Vec::new(),
            base_models: files,
        }
    }

    fn file(sha: &str) -> BaseModelFile {
        BaseModelFile {
            path: "/models/other.gguf".into(),
            sha256: sha.into(),
            description: String::new(),
        }
    }

    #[test]
    fn the_menu_serves_the_default_and_the_listed_files_by_name() {
        let menu = BaseModelMenu::from_config(&config(BTreeMap::from([(
            "qwen-mini".to_string(),
            file(&"ab".repeat(32)),
        )])));
        assert_eq!(menu.names(), vec![DEFAULT_BASE_MODEL, "qwen-mini"]);
        assert_eq!(
            menu.resolve(DEFAULT_BASE_MODEL_ALIAS).unwrap().name,
            DEFAULT_BASE_MODEL,
            "agents created before the menu keep their model"
        );
        assert_eq!(
            menu.default_choice().sha256,
            models::SMOLLM2.files[0].sha256
        );
        assert_eq!(menu.resolve("qwen-mini").unwrap().sha256, "ab".repeat(32));
        let e = menu.resolve("llama-70b").unwrap_err();
        assert!(
            e.contains("\"llama-70b\"") && e.contains("smollm2-135m-instruct, qwen-mini"),
            "{e}"
        );
    }

    #[test]
    fn listed_files_are_checked_by_key() {
        let bad = |name: &str, f: BaseModelFile| {
            validate_files(&BTreeMap::from([(name.to_string(), f)])).unwrap_err()
        };
        assert!(
            validate_files(&BTreeMap::from([("ok-1.5".into(), file(&"0f".repeat(32)))])).is_ok()
        );
        let e = bad("Big Model", file(&"ab".repeat(32)));
        assert!(e.starts_with("models.base_models.Big Model:"), "{e}");
        let e = bad(DEFAULT_BASE_MODEL_ALIAS, file(&"ab".repeat(32)));
        assert!(e.contains("always served"), "{e}");
        let e = bad("m", file("ABC"));
        assert!(e.starts_with("models.base_models.m.sha256:"), "{e}");
        let e = bad(
            "m",
            BaseModelFile {
                path: "".into(),
                ..file(&"ab".repeat(32))
            },
        );
        assert!(e.starts_with("models.base_models.m.path:"), "{e}");
    }

    #[test]
    fn a_listed_file_that_is_missing_or_hashes_otherwise_is_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing.gguf");
        let mut f = file(&"ab".repeat(32));
        f.path = path.clone();
        let menu = BaseModelMenu::from_config(&config(BTreeMap::from([("x".into(), f)])));
        let e = load_listed(&menu).err().unwrap();
        assert!(e.starts_with("models.base_models.x.path"), "{e}");
    }
}
