//! Finding a libtorch 2.11 and recording it as `<repo>/.libtorch/active`.
//!
//! `cargo xtask setup` tries, in order:
//! 1. a `LIBTORCH` the user exported (cargo's `[env]` never overrides it), which is checked and
//!    used as is;
//! 2. `.libtorch/active` from an earlier run, when it still resolves to a usable libtorch (the
//!    fast, idempotent path: no Python is started);
//! 3. the `torch` package of a Python (`python3`, then `python`) whose torch is 2.11.x (see
//!    [`crate::python`]);
//! 4. a CPU build assembled from pip wheels into `.libtorch/libtorch-2.11.0-cpu` (see
//!    [`crate::provision`]).
//!
//! Everything that decides (version parsing, folder checks, the user-set test, the choice among
//! Python probes) is a pure function with unit tests; only [`setup`] and the Python probe touch the
//! environment.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::provision;
use crate::python::{choose_python_torch, probe_python, Probe, PYTHONS};

/// The libtorch `major.minor` that `tch` 0.24 is built for; any patch release is accepted.
pub const REQUIRED: &str = "2.11";

/// The exact torch release provisioned from pip wheels.
pub const PROVISIONED_VERSION: &str = "2.11.0";

/// The folder name, inside `.libtorch/`, of the provisioned CPU build.
pub const PROVISIONED_DIR: &str = "libtorch-2.11.0-cpu";

/// The main libtorch library every valid folder has under `lib/`.
pub const LIBTORCH_CPU: &str =
    if cfg!(target_os = "macos") { "libtorch_cpu.dylib" } else { "libtorch_cpu.so" };

/// Parses `major.minor[.patch]` from a torch version string such as `2.11.0+cu130` or `2.11.0a0`.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let public = text.trim().split('+').next()?;
    let mut parts = public.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        None => 0,
        Some(p) => {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()?
        }
    };
    Some((major, minor, patch))
}

/// Whether a torch version string is a release this workspace can build against (2.11.x).
pub fn version_supported(text: &str) -> bool {
    parse_version(text).is_some_and(|(major, minor, _)| format!("{major}.{minor}") == REQUIRED)
}

/// Extracts the value of `__version__ = '...'` from torch's `version.py`.
pub fn parse_version_py(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("__version__")?;
        let value = rest.trim_start().strip_prefix('=')?.trim();
        let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let inner = value.strip_prefix(quote)?;
        Some(inner[..inner.find(quote)?].to_string())
    })
}

/// Where a folder's version came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVersion {
    /// The version string as written, e.g. `2.11.0+cu130`.
    pub version: String,
    /// The file it was read from: `build-version` or `version.py`.
    pub file: &'static str,
}

/// Reads a libtorch folder's version from `build-version`, else from torch's `version.py`.
pub fn read_version(dir: &Path) -> Option<FoundVersion> {
    if let Ok(text) = fs::read_to_string(dir.join("build-version")) {
        let version = text.lines().next().unwrap_or_default().trim().to_string();
        return Some(FoundVersion { version, file: "build-version" });
    }
    let text = fs::read_to_string(dir.join("version.py")).ok()?;
    let version = parse_version_py(&text).unwrap_or_default();
    Some(FoundVersion { version, file: "version.py" })
}

/// Why a folder is not a usable libtorch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The folder (or the link's target) does not exist.
    Missing,
    /// No `include/` folder.
    NoInclude,
    /// No `lib/libtorch_cpu.so`.
    NoLibrary,
    /// A version file names a release other than 2.11.x.
    WrongVersion(FoundVersion),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Missing => write!(f, "the folder does not exist"),
            Invalid::NoInclude => write!(f, "it has no include/ folder"),
            Invalid::NoLibrary => write!(f, "it has no lib/{LIBTORCH_CPU}"),
            Invalid::WrongVersion(found) => write!(
                f,
                "its {} says version '{}', but ssl-rs needs libtorch {REQUIRED}.x (tch 0.24)",
                found.file, found.version
            ),
        }
    }
}

/// A folder that passed [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libtorch {
    /// The folder as given (not canonicalized, so `.libtorch/active` stays a link).
    pub root: PathBuf,
    /// Its version, or `None` when it has neither `build-version` nor `version.py`.
    pub version: Option<FoundVersion>,
}

impl Libtorch {
    /// `libtorch 2.11.0 (from build-version)`, or a note that the version is unknown.
    pub fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("libtorch {} (from {})", v.version, v.file),
            None => "libtorch of unknown version (no build-version or version.py)".to_string(),
        }
    }
}

/// Checks that `dir` has `include/`, `lib/libtorch_cpu.so` and, when it says, version 2.11.x.
pub fn inspect(dir: &Path) -> Result<Libtorch, Invalid> {
    if !dir.is_dir() {
        return Err(Invalid::Missing);
    }
    if !dir.join("include").is_dir() {
        return Err(Invalid::NoInclude);
    }
    if !dir.join("lib").join(LIBTORCH_CPU).is_file() {
        return Err(Invalid::NoLibrary);
    }
    let version = read_version(dir);
    if let Some(found) = &version {
        if !version_supported(&found.version) {
            return Err(Invalid::WrongVersion(found.clone()));
        }
    }
    Ok(Libtorch { root: dir.to_path_buf(), version })
}

/// The `LIBTORCH` the user exported, if any.
///
/// Cargo's `[env]` sets `LIBTORCH=<repo>/.libtorch/active` for every process it runs unless the
/// user exported one, so that exact path (however the repository path is spelled) means "not set
/// by the user". `repo` must be canonical.
pub fn user_libtorch(var: Option<&OsStr>, repo: &Path) -> Option<PathBuf> {
    let path = PathBuf::from(var.filter(|v| !v.is_empty())?);
    let injected = path == repo.join(".libtorch").join("active")
        || (path.file_name() == Some(OsStr::new("active"))
            && path.parent().and_then(Path::file_name) == Some(OsStr::new(".libtorch"))
            && path
                .parent()
                .and_then(Path::parent)
                .and_then(|p| p.canonicalize().ok())
                .is_some_and(|p| p == repo));
    (!injected).then_some(path)
}

/// Makes a libtorch 2.11 available and returns the folder builds will use as `LIBTORCH`.
pub fn setup(repo: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    let var = std::env::var_os("LIBTORCH");
    if let Some(user) = user_libtorch(var.as_deref(), repo) {
        return use_user_libtorch(&user, start);
    }

    let dot = repo.join(".libtorch");
    let active = dot.join("active");
    match inspect(&active) {
        Ok(found) => {
            say!(
                "{} -> {}: {}; already set up ({:.1} s)",
                active.display(),
                link_target(&active),
                found.describe(),
                start.elapsed().as_secs_f64()
            );
            warn_unknown_version(&found);
            return Ok(active);
        }
        Err(Invalid::Missing) if fs::symlink_metadata(&active).is_err() => {
            say!("{} does not exist yet; looking for libtorch {REQUIRED}", active.display());
        }
        Err(why) => {
            say!("{} -> {} is not usable ({why}); looking again", active.display(), link_target(&active))
        }
    }

    say!("asking Python for a torch {REQUIRED}.x ({})", PYTHONS.join(", "));
    let probes: Vec<(&str, Probe)> = PYTHONS.iter().map(|py| (*py, probe_python(py))).collect();
    let (chosen, notes) = choose_python_torch(&probes);
    for note in notes {
        say!("  {note}");
    }
    if let Some(found) = chosen {
        point_active(&dot, &found.libtorch.root)?;
        say!(
            "{} -> {} (torch of {}) ({:.1} s)",
            active.display(),
            found.libtorch.root.display(),
            found.python,
            start.elapsed().as_secs_f64()
        );
        return Ok(active);
    }

    let provisioned = dot.join(PROVISIONED_DIR);
    match inspect(&provisioned) {
        Ok(found) => say!("reusing {} ({})", provisioned.display(), found.describe()),
        Err(_) => {
            let Some((python, _)) = probes.iter().find(|(_, probe)| probe.is_python3()) else {
                bail!(
                    "no Python 3 found (tried {}): install Python 3 with pip, or set LIBTORCH \
                     to a libtorch {REQUIRED} folder",
                    PYTHONS.join(", ")
                );
            };
            provision::provision(&dot, python)?;
        }
    }
    point_active(&dot, Path::new(PROVISIONED_DIR))?;
    let found = inspect(&active)
        .map_err(|why| anyhow::anyhow!("{} was just set up but is not usable: {why}", active.display()))?;
    say!(
        "{} -> {}: {} ({:.1} s)",
        active.display(),
        PROVISIONED_DIR,
        found.describe(),
        start.elapsed().as_secs_f64()
    );
    Ok(active)
}

/// Step 1 of [`setup`]: checks and reports a user-exported `LIBTORCH`.
fn use_user_libtorch(user: &Path, start: Instant) -> Result<PathBuf> {
    if user.is_relative() {
        bail!(
            "LIBTORCH={} is a relative path; build scripts run in other folders, so export an \
             absolute path (or unset LIBTORCH to let setup provision one)",
            user.display()
        );
    }
    let found = inspect(user).map_err(|why| {
        anyhow::anyhow!(
            "LIBTORCH={} is not a usable libtorch {REQUIRED}: {why}. Point it at a libtorch \
             {REQUIRED} folder, or unset it to let setup find or provision one",
            user.display()
        )
    })?;
    say!("using LIBTORCH={} from your environment: {}", user.display(), found.describe());
    warn_unknown_version(&found);
    say!(
        "your LIBTORCH takes precedence over .libtorch/active, so setup leaves .libtorch/ \
         untouched ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(user.to_path_buf())
}

fn warn_unknown_version(found: &Libtorch) {
    if found.version.is_none() {
        say!(
            "warning: cannot check the version of {} (no build-version or version.py); it must \
             be libtorch {REQUIRED}.x",
            found.root.display()
        );
    }
}

fn link_target(link: &Path) -> String {
    fs::read_link(link).map_or_else(|_| "?".to_string(), |t| t.display().to_string())
}

/// Points `<dot>/active` at `target` (relative to `dot`, or absolute), replacing any earlier link
/// atomically: a new link `active.tmp` is renamed over the old one.
pub fn point_active(dot: &Path, target: &Path) -> Result<()> {
    let active = dot.join("active");
    if fs::read_link(&active).is_ok_and(|current| current == target) {
        return Ok(());
    }
    fs::create_dir_all(dot).with_context(|| format!("creating {}", dot.display()))?;
    let tmp = dot.join("active.tmp");
    if fs::symlink_metadata(&tmp).is_ok() {
        fs::remove_file(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    symlink(target, &tmp)?;
    fs::rename(&tmp, &active).with_context(|| {
        format!("replacing {} (if it is a real folder rather than a link, move it away)", active.display())
    })
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> Result<()> {
    bail!(
        "setup records libtorch with a symbolic link, which needs Linux or macOS; set LIBTORCH \
         instead"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn check_version(text: &str, parsed: Option<(u32, u32, u32)>, supported: bool) {
        assert_eq!(parse_version(text), parsed, "parse_version({text:?})");
        assert_eq!(version_supported(text), supported, "version_supported({text:?})");
    }

    /// tch 0.24 is built against libtorch 2.11; the provisioned release must be one of those.
    #[test]
    fn pinned_release_is_consistent() {
        assert_eq!(REQUIRED, "2.11");
        assert!(version_supported(PROVISIONED_VERSION));
        assert_eq!(PROVISIONED_DIR, format!("libtorch-{PROVISIONED_VERSION}-cpu"));
    }

    #[test]
    fn versions() {
        check_version("2.11.0+cu130", Some((2, 11, 0)), true);
        check_version("2.11.0", Some((2, 11, 0)), true);
        check_version("2.11.3\n", Some((2, 11, 3)), true);
        check_version("2.11.0a0+git1234", Some((2, 11, 0)), true);
        check_version("2.11", Some((2, 11, 0)), true);
        check_version("2.10.1", Some((2, 10, 1)), false);
        check_version("2.12.0+cpu", Some((2, 12, 0)), false);
        check_version("2.110.0", Some((2, 110, 0)), false);
        check_version("1.11.0", Some((1, 11, 0)), false);
        check_version("", None, false);
        check_version("torch", None, false);
    }

    #[test]
    fn version_py() {
        let check = |text: &str, expected: Option<&str>| {
            assert_eq!(parse_version_py(text).as_deref(), expected, "{text:?}");
        };
        check("__version__ = '2.11.0+cu130'\ndebug = False\n", Some("2.11.0+cu130"));
        check("from typing import Optional\n__version__ = \"2.11.0\"\n", Some("2.11.0"));
        check("__version__='2.10.1'", Some("2.10.1"));
        check("git_version = 'abc'\n", None);
        check("__version__ = unknown\n", None);
    }

    /// A fake libtorch folder: `include/`, `lib/libtorch_cpu.so` and the given version files.
    pub(crate) fn fake_libtorch(build_version: Option<&str>, version_py: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("include/torch")).expect("include");
        fs::create_dir_all(dir.path().join("lib")).expect("lib");
        fs::write(dir.path().join("lib").join(LIBTORCH_CPU), b"").expect("lib file");
        if let Some(v) = build_version {
            fs::write(dir.path().join("build-version"), v).expect("build-version");
        }
        if let Some(v) = version_py {
            fs::write(dir.path().join("version.py"), v).expect("version.py");
        }
        dir
    }

    #[test]
    fn inspect_accepts_2_11_from_either_version_file() {
        let dir = fake_libtorch(Some("2.11.0+cu130\n"), None);
        let found = inspect(dir.path()).expect("valid");
        assert_eq!(
            found.version.map(|v| (v.version, v.file)),
            Some(("2.11.0+cu130".into(), "build-version"))
        );

        let dir = fake_libtorch(None, Some("__version__ = '2.11.0+cu130'\n"));
        let found = inspect(dir.path()).expect("valid");
        assert_eq!(found.version.map(|v| v.file), Some("version.py"));

        // build-version wins over version.py.
        let dir = fake_libtorch(Some("2.11.0"), Some("__version__ = '2.10.1'\n"));
        assert!(inspect(dir.path()).is_ok());
    }

    #[test]
    fn inspect_accepts_unknown_version() {
        let dir = fake_libtorch(None, None);
        assert_eq!(inspect(dir.path()).expect("valid").version, None);
    }

    #[test]
    fn inspect_rejects_wrong_version() {
        let dir = fake_libtorch(Some("2.10.1"), None);
        let err = inspect(dir.path()).expect_err("2.10 is rejected");
        assert!(matches!(&err, Invalid::WrongVersion(v) if v.version == "2.10.1"));
        assert!(err.to_string().contains("2.10.1"), "{err}");

        let dir = fake_libtorch(None, Some("__version__ = 'garbage'\n"));
        assert!(matches!(inspect(dir.path()), Err(Invalid::WrongVersion(_))));
    }

    #[test]
    fn inspect_rejects_incomplete_folders() {
        let dir = fake_libtorch(Some("2.11.0"), None);
        fs::remove_file(dir.path().join("lib").join(LIBTORCH_CPU)).expect("rm");
        assert_eq!(inspect(dir.path()), Err(Invalid::NoLibrary));

        let dir = fake_libtorch(Some("2.11.0"), None);
        fs::remove_dir_all(dir.path().join("include")).expect("rm");
        assert_eq!(inspect(dir.path()), Err(Invalid::NoInclude));

        assert_eq!(inspect(&dir.path().join("nope")), Err(Invalid::Missing));
    }

    #[cfg(unix)]
    #[test]
    fn inspect_follows_the_active_link_and_point_active_replaces_it() {
        let dot = tempfile::tempdir().expect("tempdir");
        let good = fake_libtorch(Some("2.11.0"), None);
        let old = fake_libtorch(Some("2.10.1"), None);
        let active = dot.path().join("active");

        point_active(dot.path(), old.path()).expect("link");
        assert!(matches!(inspect(&active), Err(Invalid::WrongVersion(_))));
        point_active(dot.path(), good.path()).expect("relink");
        assert_eq!(fs::read_link(&active).expect("link"), good.path());
        assert_eq!(inspect(&active).expect("valid").root, active);
        assert!(fs::symlink_metadata(dot.path().join("active.tmp")).is_err());

        // Relative targets resolve against `.libtorch/`, as for the provisioned folder.
        fs::rename(good.path(), dot.path().join("libtorch-x")).expect("move");
        point_active(dot.path(), Path::new("libtorch-x")).expect("relative link");
        assert!(inspect(&active).is_ok());
    }

    #[test]
    fn user_set_libtorch() {
        let repo = tempfile::tempdir().expect("tempdir");
        let repo = repo.path().canonicalize().expect("canonical");
        let injected = repo.join(".libtorch").join("active");
        let check = |var: Option<&OsStr>, expected: Option<&Path>| {
            assert_eq!(user_libtorch(var, &repo).as_deref(), expected, "{var:?}");
        };

        check(None, None);
        check(Some(OsStr::new("")), None);
        // What cargo's [env] injects is not the user's choice, even spelled differently.
        check(Some(injected.as_os_str()), None);
        fs::create_dir(repo.join("crates")).expect("crates");
        let dotted = repo.join("crates").join("..").join(".libtorch").join("active");
        check(Some(dotted.as_os_str()), None);
        #[cfg(unix)]
        {
            let elsewhere = tempfile::tempdir().expect("tempdir");
            let link = elsewhere.path().join("repo-link");
            std::os::unix::fs::symlink(&repo, &link).expect("symlink");
            let through_link = link.join(".libtorch").join("active");
            check(Some(through_link.as_os_str()), None);
        }
        // Anything else is.
        check(Some(OsStr::new("/opt/libtorch")), Some(Path::new("/opt/libtorch")));
        let other_repo = Path::new("/elsewhere/.libtorch/active");
        check(Some(other_repo.as_os_str()), Some(other_repo));
        let sibling = repo.join(".libtorch").join(PROVISIONED_DIR);
        check(Some(sibling.as_os_str()), Some(&sibling));
    }
}
