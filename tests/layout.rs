//! The workspace's layout stays free of import circles between files (issue 17):
//! `scripts/import-graph.py` reads every crate's `src/` and must find none, both with
//! the paths as written and with paths through a crate root's re-exports followed to
//! the file that defines the item.

use std::process::Command;

#[test]
fn no_file_imports_itself_through_a_circle() {
    check(&[]);
}

#[test]
fn no_circle_runs_through_a_re_export() {
    check(&["--follow-reexports"]);
}

fn check(flags: &[&str]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = match Command::new("python3")
        .arg(format!("{root}/scripts/import-graph.py"))
        .arg(root)
        .args(flags)
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: python3 is not runnable here ({e})");
            return;
        }
        Err(e) => panic!("CI=true and python3 is not runnable: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(
        out.status.success(),
        "import-graph.py failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every crate is listed, with its own count, and the total is zero.
    for krate in [
        "arena", "platform", "judges", "agents", "chain", "web", "spaces", "store",
    ] {
        assert!(
            text.contains(&format!("\n{krate} ({krate}): ")),
            "import-graph.py did not read crate {krate}:\n{text}"
        );
    }
    assert!(
        text.contains("\nimport circles: 0\n"),
        "import circles between files (each must be broken, see the listed files):\n{text}"
    );
}
