//! `plugin-host config`: the effective configuration, each value with the file and line that
//! set it, and the layer files read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use host::config::{Config, LayerKind, Locations};
use host::text::printable;
use serde::Serialize;

/// The name the CLI's configuration files are found under (`plugin-host.toml`,
/// `~/.config/plugin-host/config.toml`, `$PLUGIN_HOST_CONFIG`, …).
pub const APP: &str = "plugin-host";

/// Loads the CLI's configuration from the process environment and working directory: what the
/// other commands call before applying their flags over it.
pub fn load_config() -> Result<Config> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    Ok(Config::load(&Locations::from_env(APP, cwd))?)
}

/// Prints the effective configuration.
pub fn run(json: bool) -> Result<ExitCode> {
    let config = load_config()?;
    if json {
        print_json(&config)?;
    } else {
        print_text(&config)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(config: &Config) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let env = Locations::env_var(config.app());
    writeln!(out, "# layers, lowest first (later ones override per key):")?;
    for c in config.candidates() {
        let what = match (c.kind, c.found) {
            (LayerKind::Project, false) => format!(
                "{}: none in {} or a parent  (absent)",
                printable(&file_name(&c.path)),
                printable(&parent(&c.path).display().to_string())
            ),
            (LayerKind::Explicit, found) => format!(
                "{}  (from ${env}{})",
                printable(&c.path.display().to_string()),
                if found { "" } else { "; absent" }
            ),
            (_, found) => format!(
                "{}{}",
                printable(&c.path.display().to_string()),
                if found { "" } else { "  (absent)" }
            ),
        };
        writeln!(out, "#   {:<8} {what}", c.kind.as_str())?;
    }
    if let Some(dir) = config.project_dir() {
        writeln!(
            out,
            "# project directory: {}",
            printable(&dir.display().to_string())
        )?;
    }
    for e in config.entries() {
        let from = match &e.origin {
            Some(o) => o.to_string(),
            None => "default".to_owned(),
        };
        writeln!(
            out,
            "{}  # {}",
            printable(&format!("{} = {}", e.key, e.toml)),
            printable(&from)
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Doc<'a> {
    app: &'a str,
    env: String,
    project_dir: Option<&'a Path>,
    files: Vec<FileDoc<'a>>,
    values: Vec<ValueDoc>,
}

#[derive(Serialize)]
struct FileDoc<'a> {
    layer: &'a str,
    path: &'a Path,
    found: bool,
}

#[derive(Serialize)]
struct ValueDoc {
    key: String,
    value: serde_json::Value,
    file: Option<PathBuf>,
    line: Option<usize>,
    column: Option<usize>,
}

fn print_json(config: &Config) -> Result<()> {
    let doc = Doc {
        app: config.app(),
        env: Locations::env_var(config.app()),
        project_dir: config.project_dir(),
        files: config
            .candidates()
            .iter()
            .map(|c| FileDoc {
                layer: c.kind.as_str(),
                path: &c.path,
                found: c.found,
            })
            .collect(),
        values: config
            .entries()
            .into_iter()
            .map(|e| ValueDoc {
                key: e.key,
                value: e.json,
                file: e.origin.as_ref().map(|o| o.file.clone()),
                line: e.origin.as_ref().map(|o| o.line),
                column: e.origin.as_ref().map(|o| o.column),
            })
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}
