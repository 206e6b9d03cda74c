//! `plugin-host config`: the effective configuration, each value with the file and line that
//! set it, and the layer files read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Once;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use host::config::{Config, LayerKind, Locations};
use host::text::printable;
use serde::Serialize;

/// The name the CLI's configuration files are found under (`plugin-host.toml`,
/// `~/.config/plugin-host/config.toml`, `$PLUGIN_HOST_CONFIG`, …).
pub const APP: &str = "plugin-host";

/// What `plugin-host config` does besides printing the configuration.
#[derive(Subcommand)]
pub enum ConfigAction {
    /// Trust a project file as it is now: until then it is ignored (its plugins, search paths
    /// and settings). Recorded with its sha256 in the user's data directory
    /// ($XDG_DATA_HOME/plugin-host/trusted-projects); a changed file must be trusted again.
    Trust {
        /// The project file (default: the `plugin-host.toml` found from here upwards).
        file: Option<PathBuf>,
    },
    /// Stop trusting a project file.
    Untrust {
        /// The project file (default: the `plugin-host.toml` found from here upwards).
        file: Option<PathBuf>,
    },
}

fn locations() -> Result<Locations> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    Ok(Locations::from_env(APP, cwd))
}

/// Loads the CLI's configuration from the process environment and working directory: what the
/// other commands call before applying their flags over it. A project file that is ignored,
/// and a project setting that would have lowered a trust setting, are said on stderr — once
/// per run, however many times the configuration is loaded.
pub fn load_config() -> Result<Config> {
    let config = Config::load(&locations()?)?;
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        for file in config.ignored() {
            errln!("warning: {}", printable(&file.message(APP)));
        }
        for notice in config.notices() {
            errln!("warning: {}", printable(notice));
        }
    });
    Ok(config)
}

/// `plugin-host config [trust|untrust]`.
pub fn run(json: bool, action: Option<ConfigAction>) -> Result<ExitCode> {
    match action {
        None => show(json),
        Some(ConfigAction::Trust { file }) => {
            let locations = locations()?;
            let file = project_file(&locations, file)?;
            let trusted = host::config::trust_project(&locations, &file)?;
            outln!(
                "trusted {}: its plugins and settings are used from now on (until it changes)",
                printable(&trusted.display().to_string())
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(ConfigAction::Untrust { file }) => {
            let locations = locations()?;
            let file = project_file(&locations, file)?;
            let shown = printable(&file.display().to_string()).into_owned();
            if host::config::untrust_project(&locations, &file)? {
                outln!("no longer trusted: {shown}")?;
            } else {
                outln!("{shown} was not trusted; nothing changed")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The file given, else the project file found from the working directory upwards.
fn project_file(locations: &Locations, given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(file) = given {
        return Ok(locations.cwd.join(file));
    }
    match locations.project_file() {
        Some(file) => Ok(file),
        None => bail!(
            "no {} in {} or a parent directory; name the file to trust",
            locations.project_file_name(),
            printable(&locations.cwd.display().to_string())
        ),
    }
}

/// Prints the effective configuration.
fn show(json: bool) -> Result<ExitCode> {
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
        let ignored = config
            .ignored()
            .iter()
            .find(|i| i.path == c.path)
            .map(|i| format!("  (ignored: {})", ignored_reason(&i.why)))
            .unwrap_or_default();
        writeln!(out, "#   {:<8} {what}{ignored}", c.kind.as_str())?;
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
    /// Paths as text, any bytes beyond UTF-8 replaced (as `scan --json` gives them).
    project_dir: Option<String>,
    files: Vec<FileDoc<'a>>,
    values: Vec<ValueDoc>,
}

#[derive(Serialize)]
struct FileDoc<'a> {
    layer: &'a str,
    path: String,
    found: bool,
    /// Why a found file is not used (`not-trusted`, `changed`, `other-owner`, `no-record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'a host::config::Untrusted>,
}

#[derive(Serialize)]
struct ValueDoc {
    key: String,
    value: serde_json::Value,
    file: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
}

fn print_json(config: &Config) -> Result<()> {
    let doc = Doc {
        app: config.app(),
        env: Locations::env_var(config.app()),
        project_dir: config.project_dir().map(lossy),
        files: config
            .candidates()
            .iter()
            .map(|c| FileDoc {
                layer: c.kind.as_str(),
                path: lossy(&c.path),
                found: c.found,
                ignored: config
                    .ignored()
                    .iter()
                    .find(|i| i.path == c.path)
                    .map(|i| &i.why),
            })
            .collect(),
        values: config
            .entries()
            .into_iter()
            .map(|e| ValueDoc {
                key: e.key,
                value: e.json,
                file: e.origin.as_ref().map(|o| lossy(&o.file)),
                line: e.origin.as_ref().map(|o| o.line),
                column: e.origin.as_ref().map(|o| o.column),
            })
            .collect(),
    };
    // Made whole before any of it is written: a consumer never reads half a document.
    let text = serde_json::to_string_pretty(&doc)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A few words on why a project file is ignored (the whole message is on stderr).
fn ignored_reason(why: &host::config::Untrusted) -> String {
    use host::config::Untrusted;
    match why {
        Untrusted::NotTrusted => format!("not trusted; `{APP} config trust` trusts it"),
        Untrusted::Changed => format!("changed since trusted; `{APP} config trust` again"),
        Untrusted::OtherOwner { uid, .. } => format!("owned by user {uid}"),
        Untrusted::Unusable { detail } => host::text::printable(detail).into_owned(),
        Untrusted::Unchecked { .. } => "its owner cannot be checked".to_owned(),
        _ => "nowhere to record trust".to_owned(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}
