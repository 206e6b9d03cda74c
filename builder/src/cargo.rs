//! Running `cargo` and `rustc` for a plugin crate with the toolchain its build would use,
//! offline first so nothing is fetched when the crates are cached — and without running any
//! program the crate names.
//!
//! A crate is untrusted input. The toolchain rustup would pick for its directory
//! (`RUSTUP_TOOLCHAIN`, a `rustup override`, a `rust-toolchain[.toml]` file, the default) is
//! read here ([`toolchain_for`]) instead of letting rustup's proxy pick it in the crate's
//! directory; a toolchain file that names a toolchain by `path` is refused. `cargo` and
//! `rustc` then run with the working directory `/`, the crate named by `--manifest-path`
//! (so no `.cargo/config.toml` of the crate or its parents is read: no `rustc-wrapper`,
//! no `[target] runner`, no `paths`), `RUSTUP_TOOLCHAIN` set to the chosen toolchain, and
//! the rustc wrappers of the environment disabled.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use plugin_api::provenance::{Dependency, Rustc};

/// A `cargo` or `rustc` command that could not be run or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The program could not be started.
    #[error("cannot run `{command}` in {}: {source}", dir.display())]
    Spawn {
        /// The command line.
        command: String,
        /// Where it was run.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("`{command}` failed in {}: {}", dir.display(), excerpt(stderr))]
    Failed {
        /// The command line.
        command: String,
        /// Where it was run.
        dir: PathBuf,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The crate names a toolchain by path: running it would run the crate's own programs.
    #[error("{} names its toolchain by path (`path = {path:?}`): preflight runs no program a crate names, and that toolchain's cargo and rustc are the crate's; pin a rustup toolchain instead (`[toolchain] channel = \"…\"`), or choose one for this run with RUSTUP_TOOLCHAIN=NAME", file.display())]
    PathToolchain {
        /// The toolchain file.
        file: PathBuf,
        /// The path it names.
        path: String,
    },
    /// A toolchain file could not be read or understood.
    #[error("{}: {message}", file.display())]
    ToolchainFile {
        /// The toolchain file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It printed something this crate cannot read.
    #[error("unexpected output from `{command}`: {message}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        message: String,
    },
}

impl ToolError {
    /// For a failed command, cargo's own explanation (the `error:` line and what follows).
    pub fn cargo_reason(&self) -> String {
        match self {
            ToolError::Failed { stderr, .. } => excerpt(stderr),
            other => other.to_string(),
        }
    }
}

/// The lines of a cargo error worth showing: from the first `error` line on, at most six.
fn excerpt(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim_end).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("error"))
        .unwrap_or(0);
    lines[start..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// What picks the compiler for a build in a directory, as rustup decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ToolchainChoice {
    /// `$RUSTC` names the compiler.
    Rustc {
        /// The program.
        program: String,
    },
    /// `RUSTUP_TOOLCHAIN` in the environment (over any file or override).
    Env {
        /// The toolchain.
        name: String,
    },
    /// A `rustup override set` for a directory above the crate (over a toolchain file).
    Override {
        /// The directory the override is for.
        dir: PathBuf,
        /// The toolchain.
        name: String,
    },
    /// A `rust-toolchain` or `rust-toolchain.toml` file.
    File {
        /// The file.
        file: PathBuf,
        /// The toolchain it names (`None`: it names none, so rustup's default).
        name: Option<String>,
    },
    /// rustup's default toolchain (or the `rustc` on PATH without rustup).
    Default,
}

impl ToolchainChoice {
    /// The rustup toolchain name to run with, when one is chosen.
    pub fn name(&self) -> Option<&str> {
        match self {
            ToolchainChoice::Env { name } | ToolchainChoice::Override { name, .. } => Some(name),
            ToolchainChoice::File { name, .. } => name.as_deref(),
            _ => None,
        }
    }

    /// The toolchain file it is, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ToolchainChoice::File { file, .. } => Some(file),
            _ => None,
        }
    }
}

impl std::fmt::Display for ToolchainChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolchainChoice::Rustc { program } => write!(f, "RUSTC={program}"),
            ToolchainChoice::Env { name } => write!(f, "RUSTUP_TOOLCHAIN={name}"),
            ToolchainChoice::Override { dir, name } => {
                write!(f, "rustup override {name} for {}", dir.display())
            }
            ToolchainChoice::File {
                file,
                name: Some(name),
            } => write!(f, "{} ({name})", file.display()),
            ToolchainChoice::File { file, name: None } => {
                write!(f, "{} (no channel: rustup's default)", file.display())
            }
            ToolchainChoice::Default => write!(f, "rustup's default toolchain"),
        }
    }
}

/// The largest toolchain or rustup settings file read.
const MAX_SETTINGS: u64 = 1 << 20;

/// A toolchain or rustup settings file: a regular file (a link followed, as rustup does),
/// bounded, never blocking.
const SETTINGS_FILE: host::small_file::SmallFile = host::small_file::SmallFile {
    what: "toolchain file",
    limit: MAX_SETTINGS,
    links: host::small_file::Links::Follow,
};

/// Reads a small regular file (following a link, as rustup does), bounded.
fn read_small(path: &Path) -> Result<String, String> {
    SETTINGS_FILE.read_to_string(path).map_err(|e| e.detail())
}

/// The directory overrides in rustup's settings (`rustup override set`), as (dir, name).
fn rustup_overrides() -> Vec<(PathBuf, String)> {
    let home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup")));
    let Some(text) = home.and_then(|h| read_small(&h.join("settings.toml")).ok()) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return Vec::new();
    };
    doc.get("overrides")
        .and_then(|o| o.as_table_like())
        .map(|t| {
            t.iter()
                .filter_map(|(dir, name)| Some((PathBuf::from(dir), name.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The longest toolchain name or path a message quotes from a toolchain file.
const MAX_NAMED: usize = 256;

/// Whether rustup would take `name` for a toolchain name (not a path to one).
fn is_toolchain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_whitespace)
}

/// What a toolchain file names, read here (rustup is not asked: it would run a `path`
/// toolchain's programs).
fn read_toolchain_file(file: &Path) -> Result<ToolchainChoice, ToolError> {
    let bad = |message: String| ToolError::ToolchainFile {
        file: file.to_owned(),
        message,
    };
    let text = read_small(file).map_err(bad)?;
    let trimmed = text.trim();
    let legacy = file.extension().is_none() && !trimmed.contains('[');
    // Nothing of the file is quoted but a name or path it gives: it may be a link (rustup
    // follows them) to a file that is not a toolchain file at all, a secret's.
    let (channel, path) = if legacy {
        if trimmed.lines().count() > 1 || trimmed.len() > MAX_NAMED {
            return Err(bad(format!(
                "not a toolchain file: {} bytes in {} lines, where one line names a toolchain",
                text.len(),
                text.lines().count()
            )));
        }
        (Some(trimmed.to_owned()), None)
    } else {
        let doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            bad(match line {
                Some(line) => format!("not valid TOML at line {line}: {}", e.message()),
                None => format!("not valid TOML: {}", e.message()),
            })
        })?;
        let table = doc.get("toolchain").and_then(|t| t.as_table_like());
        let get = |key: &str| {
            table
                .and_then(|t| t.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        (get("channel"), get("path"))
    };
    if let Some(path) = path {
        return Err(ToolError::PathToolchain {
            file: file.to_owned(),
            path: host::text::bounded(&path, MAX_NAMED).into_owned(),
        });
    }
    match channel {
        Some(name) if !is_toolchain_name(&name) => Err(ToolError::PathToolchain {
            file: file.to_owned(),
            path: name,
        }),
        name => Ok(ToolchainChoice::File {
            file: file.to_owned(),
            name,
        }),
    }
}

/// The toolchain a build in `dir` would use, as rustup decides it — `$RUSTC`, then
/// `RUSTUP_TOOLCHAIN`, then per directory from `dir` upward a `rustup override` and a
/// `rust-toolchain` / `rust-toolchain.toml` file, then the default — read without running
/// anything. A toolchain named by path is an error ([`ToolError::PathToolchain`]).
pub fn toolchain_for(dir: &Path) -> Result<ToolchainChoice, ToolError> {
    if let Ok(program) = std::env::var("RUSTC") {
        return Ok(ToolchainChoice::Rustc { program });
    }
    if let Ok(name) = std::env::var("RUSTUP_TOOLCHAIN") {
        return Ok(ToolchainChoice::Env { name });
    }
    let overrides = rustup_overrides();
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    for d in dir.ancestors() {
        if let Some((_, name)) = overrides.iter().find(|(o, _)| o == d) {
            return Ok(ToolchainChoice::Override {
                dir: d.to_owned(),
                name: name.clone(),
            });
        }
        for file in ["rust-toolchain", "rust-toolchain.toml"] {
            let file = d.join(file);
            if file.is_file() {
                return read_toolchain_file(&file);
            }
        }
    }
    Ok(ToolchainChoice::Default)
}

/// The cargo a build would use: `$CARGO` when set (inside a cargo invocation), else the one
/// on `PATH` (rustup's proxy).
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` for the package or workspace whose manifest is in `dir` (with
/// `--manifest-path` unless `args` name one), with the toolchain chosen for `dir`; returns
/// its stdout.
pub(crate) fn cargo(dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let mut args = args.to_vec();
    if !args.contains(&"--manifest-path") {
        args.extend(["--manifest-path", &manifest]);
    }
    run(&cargo_program(), dir, &toolchain_for(dir)?, &args)
}

/// Runs `cargo ARGS --offline`, and again online if that fails: nothing is fetched when the
/// crates are cached, and a machine that has never seen them still works.
pub(crate) fn cargo_offline_first(dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    let mut offline = args.to_vec();
    offline.push("--offline");
    cargo(dir, &offline).or_else(|_| cargo(dir, args))
}

/// Runs `program ARGS` for the crate in `dir` with `toolchain`: from `/`, so no config or
/// toolchain file of the crate is read, with no rustc wrapper.
fn run(
    program: &str,
    dir: &Path,
    toolchain: &ToolchainChoice,
    args: &[&str],
) -> Result<String, ToolError> {
    let command = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir("/")
        .env("RUSTC_WRAPPER", "")
        .env("RUSTC_WORKSPACE_WRAPPER", "")
        .env("CARGO_BUILD_RUSTC_WRAPPER", "")
        .env("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER", "");
    if let Some(name) = toolchain.name() {
        cmd.env("RUSTUP_TOOLCHAIN", name);
    }
    let output = cmd.output().map_err(|source| ToolError::Spawn {
        command: command.clone(),
        dir: dir.to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(ToolError::Failed {
            command,
            dir: dir.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    String::from_utf8(output.stdout).map_err(|_| ToolError::Output {
        command,
        message: "not UTF-8".into(),
    })
}

/// The compiler a build in `dir` would use (`$RUSTC`, else rustup's choice for `dir`, read
/// by [`toolchain_for`]), the target it builds for by default (its host triple), and what
/// chose it.
pub(crate) fn rustc(dir: &Path) -> Result<(Rustc, String, ToolchainChoice), ToolError> {
    let choice = toolchain_for(dir)?;
    let program = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let text = run(&program, dir, &choice, &["-vV"])?;
    let command = format!("{program} -vV");
    let rustc = plugin_api::build::parse_rustc_vv(&text).map_err(|message| ToolError::Output {
        command: command.clone(),
        message,
    })?;
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .ok_or(ToolError::Output {
            command,
            message: "no `host:` line".into(),
        })?;
    Ok((rustc, host, choice))
}

/// The crates linked into package `spec` (`name@version`) for `target` with its default
/// features: the recorder's own `cargo tree` query, so the prediction is what it will record.
pub(crate) fn linked_crates(
    manifest: &Path,
    spec: &str,
    target: &str,
) -> Result<Vec<Dependency>, ToolError> {
    let dir = manifest.parent().unwrap_or(Path::new("/"));
    let manifest_arg = manifest.to_string_lossy();
    let args = [
        "tree",
        "--manifest-path",
        &manifest_arg,
        "--package",
        spec,
        "--target",
        target,
        "--edges",
        "normal,no-proc-macro",
        "--prefix",
        "none",
        "--format",
        "{p}",
        "--locked",
    ];
    let text = cargo_offline_first(dir, &args)?;
    let name = spec.split('@').next().unwrap_or(spec);
    let version = spec.split('@').nth(1).unwrap_or_default();
    let mut deps =
        plugin_api::build::parse_cargo_tree(&text).map_err(|message| ToolError::Output {
            command: "cargo tree".into(),
            message,
        })?;
    deps.retain(|d| !(d.name() == name && d.version() == version));
    Ok(deps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn toolchain_files_are_read_and_a_path_toolchain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let toml = file(
            dir.path(),
            "rust-toolchain.toml",
            "[toolchain]\nchannel = \"1.95.0\"\ncomponents = [\"clippy\"]\n",
        );
        assert_eq!(
            read_toolchain_file(&toml).unwrap(),
            ToolchainChoice::File {
                file: toml.clone(),
                name: Some("1.95.0".into())
            }
        );
        let by_path = file(
            dir.path(),
            "rust-toolchain.toml",
            "[toolchain]\npath = \"/home/x/evil\"\n",
        );
        let error = read_toolchain_file(&by_path).unwrap_err().to_string();
        assert!(
            error.contains("names its toolchain by path (`path = \"/home/x/evil\"`)"),
            "{error}"
        );
        // The legacy one-line file: a name, or something rustup may take for a path.
        let legacy = file(dir.path(), "rust-toolchain", "nightly-2026-05-20\n");
        assert_eq!(
            read_toolchain_file(&legacy).unwrap().name(),
            Some("nightly-2026-05-20")
        );
        let legacy = file(dir.path(), "rust-toolchain", "./my-toolchain\n");
        assert!(matches!(
            read_toolchain_file(&legacy),
            Err(ToolError::PathToolchain { .. })
        ));
        // No channel: rustup's default.
        let empty = file(dir.path(), "rust-toolchain.toml", "[toolchain]\n");
        assert_eq!(read_toolchain_file(&empty).unwrap().name(), None);
    }

    #[test]
    fn a_toolchain_file_linked_to_a_secret_never_quotes_it() {
        let dir = tempfile::tempdir().unwrap();
        let secret = file(
            dir.path(),
            "credentials",
            "https://ada:ghp_SECRET@github.com\nexport TOKEN=ghp_OTHER\n",
        );
        let crate_dir = dir.path().join("crate");
        std::fs::create_dir(&crate_dir).unwrap();
        for name in ["rust-toolchain", "rust-toolchain.toml"] {
            let link = crate_dir.join(name);
            std::os::unix::fs::symlink(&secret, &link).unwrap();
            let error = read_toolchain_file(&link).unwrap_err().to_string();
            assert!(!error.contains("ghp_"), "{name}: {error}");
            std::fs::remove_file(&link).unwrap();
        }
        // One line that is not a toolchain name is quoted, as a path rustup may take it for,
        // cut.
        let long = file(dir.path(), "rust-toolchain", &"/x".repeat(10_000));
        let error = read_toolchain_file(&long).unwrap_err().to_string();
        assert!(error.len() < 2048, "{} bytes", error.len());
    }

    #[test]
    fn a_toolchain_file_that_is_not_a_regular_file_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rust-toolchain.toml");
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let error = read_toolchain_file(&path).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
}
