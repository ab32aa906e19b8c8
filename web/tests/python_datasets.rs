//! The export loads with Hugging Face `datasets` (`load_dataset("json", ...)`) as it
//! is: both layouts, the columns TRL's DPOTrainer reads, and every row.
//!
//! Without the `datasets` package the test is skipped with a message, except under
//! `CI=true`, where it fails.

mod common;

use std::process::Command;

use common::Who;

const CHECK: &str = r#"
import json, sys
from datasets import load_dataset
out = {}
for name in ("trl", "conv"):
    ds = load_dataset("json", data_files=sys.argv[1] + "/" + name + ".jsonl", split="train")
    row = ds[0]
    out[name] = {
        "rows": ds.num_rows,
        "columns": sorted(ds.column_names),
        "prompt_type": type(row["prompt"]).__name__,
        "chosen_role": row["chosen"][0]["role"] if isinstance(row["chosen"], list) else None,
    }
print(json.dumps(out))
"#;

#[tokio::test]
async fn hugging_face_datasets_loads_both_layouts() {
    let has_datasets = Command::new("python3")
        .args(["-c", "import datasets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_datasets {
        if testkit::in_ci() {
            panic!("CI=true and the Python package `datasets` is missing: pip install datasets");
        }
        eprintln!("Python `datasets` not installed; skipping");
        return;
    }
    let app = common::TestApp::new(testkit::db::TestDb::sqlite().await).await;
    testkit::fixtures::played_match(app.store(), 4).await; // 6 pairs
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [("trl", "trl"), ("conv", "trl-conversational")] {
        let r = app
            .get(
                &format!("/api/v1/datasets/preferences?format={format}"),
                &Who::anon(),
            )
            .await;
        std::fs::write(dir.path().join(format!("{name}.jsonl")), &r.text).unwrap();
    }
    let out = Command::new("python3")
        .args(["-c", CHECK, dir.path().to_str().unwrap()])
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", dir.path().join("hf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for name in ["trl", "conv"] {
        assert_eq!(report[name]["rows"], 6, "{report}");
        let cols: Vec<&str> = report[name]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for c in [
            "prompt",
            "chosen",
            "rejected",
            "pair_id",
            "margin",
            "judge_agreement",
            "space",
        ] {
            assert!(cols.contains(&c), "{name} lacks {c}: {cols:?}");
        }
    }
    assert_eq!(report["trl"]["prompt_type"], "str");
    assert_eq!(report["conv"]["prompt_type"], "list");
    assert_eq!(report["conv"]["chosen_role"], "assistant");
}
