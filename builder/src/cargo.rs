//! Running `cargo` and `rustc` in a plugin crate's directory, the way its build will: the
//! toolchain rustup picks there (a `rust-toolchain.toml`, an override, `RUSTUP_TOOLCHAIN`),
//! offline first so nothing is fetched when the crates are cached.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The cargo a build would use: `$CARGO` when set (inside a cargo invocation), else the one
/// on `PATH` (rustup's proxy).
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` in `dir`; returns its stdout.
pub(crate) fn cargo(dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    run(&cargo_program(), dir, args)
}

/// Runs `cargo ARGS --offline`, and again online if that fails: nothing is fetched when the
/// crates are cached, and a machine that has never seen them still works.
pub(crate) fn cargo_offline_first(dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    let mut offline = args.to_vec();
    offline.push("--offline");
    cargo(dir, &offline).or_else(|_| cargo(dir, args))
}

fn run(program: &str, dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| ToolError::Spawn {
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

/// The compiler a build in `dir` would use (`$RUSTC`, else rustup's choice for `dir`), and
/// the target it builds for by default (its host triple).
pub(crate) fn rustc(dir: &Path) -> Result<(Rustc, String), ToolError> {
    let program = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let text = run(&program, dir, &["-vV"])?;
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
    Ok((rustc, host))
}

/// The crates linked into package `spec` (`name@version`) for `target` with its default
/// features: the recorder's own `cargo tree` query, so the prediction is what it will record.
pub(crate) fn linked_crates(
    manifest: &Path,
    spec: &str,
    target: &str,
) -> Result<Vec<Dependency>, ToolError> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
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
