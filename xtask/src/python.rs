//! Asking Python for its torch: step 3 of [`setup`](crate::libtorch::setup).
//!
//! A `pip install torch==2.11.*` ships the headers and libraries libtorch users need (`include/`,
//! `lib/`, with the CUDA libraries on GPU machines), so its package folder can serve as
//! `LIBTORCH` directly. Running the interpreter is the only impure part ([`probe_python`]); what
//! its output means and which probe wins are pure functions.

use std::path::PathBuf;
use std::process::Command;

use crate::libtorch::{inspect, version_supported, Libtorch, REQUIRED};

/// Interpreters tried, in order, for a torch install and for pip.
pub const PYTHONS: [&str; 2] = ["python3", "python"];

/// What one Python interpreter said about itself and its torch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The interpreter could not be started.
    NoPython,
    /// The interpreter runs, but `import torch` failed (the message says why).
    NoTorch {
        /// `major.minor` of the interpreter, when it said.
        python: Option<String>,
        /// The import error.
        reason: String,
    },
    /// `import torch` worked.
    Torch {
        /// `major.minor` of the interpreter, when it said.
        python: Option<String>,
        /// `torch.__version__`.
        version: String,
        /// The folder of the torch package (holds `include/` and `lib/`).
        dir: PathBuf,
    },
}

impl Probe {
    /// Whether this interpreter is a Python 3 (and so can run pip for provisioning).
    pub fn is_python3(&self) -> bool {
        match self {
            Probe::NoPython => false,
            Probe::NoTorch { python, .. } | Probe::Torch { python, .. } => {
                python.as_deref().is_some_and(|v| v.starts_with("3."))
            }
        }
    }
}

/// The Python program run by [`probe_python`]; valid in Python 2 as well, so an old `python`
/// reports its version instead of a syntax error.
const PROBE_SCRIPT: &str = "\
import os, sys
print('ssl-rs-python=%d.%d' % sys.version_info[:2])
try:
    import torch
except Exception as e:
    print('ssl-rs-torch-error=%s' % e)
else:
    print('ssl-rs-torch-version=' + torch.__version__)
    print('ssl-rs-torch-dir=' + os.path.dirname(os.path.abspath(torch.__file__)))
";

/// Interprets the output of [`PROBE_SCRIPT`] (other lines, such as warnings, are ignored).
pub fn parse_probe(stdout: &str) -> Probe {
    let field =
        |key: &str| stdout.lines().find_map(|line| line.trim_end().strip_prefix(key).map(str::to_string));
    let python = field("ssl-rs-python=");
    match (field("ssl-rs-torch-version="), field("ssl-rs-torch-dir=")) {
        (Some(version), Some(dir)) => Probe::Torch { python, version, dir: PathBuf::from(dir) },
        _ => {
            let reason = field("ssl-rs-torch-error=")
                .unwrap_or_else(|| "the interpreter printed nothing usable".to_string());
            Probe::NoTorch { python, reason }
        }
    }
}

/// Runs `python -c PROBE_SCRIPT`.
pub fn probe_python(python: &str) -> Probe {
    match Command::new(python).arg("-c").arg(PROBE_SCRIPT).output() {
        Err(_) => Probe::NoPython,
        Ok(out) => {
            let probe = parse_probe(&String::from_utf8_lossy(&out.stdout));
            match probe {
                Probe::NoTorch { python, reason } if !out.status.success() => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let last = stderr.lines().last().unwrap_or_default().trim().to_string();
                    Probe::NoTorch { python, reason: format!("{reason}; {last}") }
                }
                probe => probe,
            }
        }
    }
}

/// A torch found through Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonTorch {
    /// The interpreter's command name.
    pub python: String,
    /// The checked torch folder.
    pub libtorch: Libtorch,
}

/// Picks the first probe whose torch is 2.11.x and whose package folder passes [`inspect`],
/// returning it with one human-readable line per probe.
pub fn choose_python_torch(probes: &[(&str, Probe)]) -> (Option<PythonTorch>, Vec<String>) {
    let mut notes = Vec::new();
    for (python, probe) in probes {
        match probe {
            Probe::NoPython => notes.push(format!("{python}: not found")),
            Probe::NoTorch { reason, .. } => notes.push(format!("{python}: no torch ({reason})")),
            Probe::Torch { version, dir, .. } if !version_supported(version) => notes.push(format!(
                "{python}: torch {version} at {}, but {REQUIRED}.x is needed; not using it",
                dir.display()
            )),
            Probe::Torch { version, dir, .. } => match inspect(dir) {
                Ok(libtorch) => {
                    notes.push(format!("{python}: torch {version} at {}", dir.display()));
                    let python = python.to_string();
                    return (Some(PythonTorch { python, libtorch }), notes);
                }
                Err(why) => notes
                    .push(format!("{python}: torch {version} at {}, but {why}; not using it", dir.display())),
            },
        }
    }
    (None, notes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::libtorch::tests::fake_libtorch;

    #[test]
    fn probe_output() {
        let check = |stdout: &str, expected: Probe| assert_eq!(parse_probe(stdout), expected);
        check(
            "ssl-rs-python=3.12\n\
             ssl-rs-torch-version=2.11.0+cu130\n\
             ssl-rs-torch-dir=/venv/lib/torch\n",
            Probe::Torch {
                python: Some("3.12".into()),
                version: "2.11.0+cu130".into(),
                dir: "/venv/lib/torch".into(),
            },
        );
        check(
            "some warning\nssl-rs-python=3.11\nssl-rs-torch-error=No module named 'torch'\n",
            Probe::NoTorch { python: Some("3.11".into()), reason: "No module named 'torch'".into() },
        );
        check("", Probe::NoTorch { python: None, reason: "the interpreter printed nothing usable".into() });
        assert!(parse_probe("ssl-rs-python=3.8\n").is_python3());
        assert!(!parse_probe("ssl-rs-python=2.7\n").is_python3());
        assert!(!Probe::NoPython.is_python3());
    }

    #[test]
    fn python_torch_discovery() {
        let good = fake_libtorch(None, Some("__version__ = '2.11.0+cu130'\n"));
        let torch = |version: &str, dir: &Path| Probe::Torch {
            python: Some("3.12".into()),
            version: version.into(),
            dir: dir.to_path_buf(),
        };
        let no_torch = Probe::NoTorch { python: Some("3.11".into()), reason: "No module".into() };
        let chosen = |probes: &[(&str, Probe)]| {
            choose_python_torch(probes).0.map(|found| (found.python, found.libtorch.root))
        };

        // python3 wins when both qualify.
        let probes =
            [("python3", torch("2.11.0+cu130", good.path())), ("python", torch("2.11.0", good.path()))];
        assert_eq!(chosen(&probes), Some(("python3".into(), good.path().to_path_buf())));
        // A wrong version in python3 falls through to python.
        let probes = [("python3", torch("2.10.1", good.path())), ("python", torch("2.11.0", good.path()))];
        assert_eq!(chosen(&probes), Some(("python".into(), good.path().to_path_buf())));
        // A torch without headers or libraries is not used.
        let empty = tempfile::tempdir().expect("tempdir");
        let probes = [("python3", torch("2.11.0", empty.path())), ("python", Probe::NoPython)];
        assert_eq!(chosen(&probes), None);
        // No torch anywhere: provisioning follows.
        let probes = [("python3", no_torch), ("python", Probe::NoPython)];
        let (found, notes) = choose_python_torch(&probes);
        assert_eq!(found, None);
        assert_eq!(notes, ["python3: no torch (No module)", "python: not found"]);
    }
}
