//! `--isolate` and `--call-timeout` never do nothing in silence: a name that matches no plugin
//! is an error, and a deadline that cannot apply (the plugin runs in-process) is a warning.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use host::config::Config;
use host::text::printable;
use host::Host;

/// Fails (before any plugin is loaded) when a name given to `--isolate` is the name of no
/// plugin in `dirs` nor of a `[plugins.NAME]` table of `config`: the plugin the user meant
/// would otherwise run in-process. Names come from each file's provenance (no plugin code
/// runs); a close name is suggested.
pub fn check_names(isolate: &[String], dirs: &[PathBuf], config: &Config) -> Result<()> {
    #[cfg(not(unix))]
    if !isolate.is_empty() {
        return Err(crate::unix_only::isolation("`--isolate`"));
    }
    let named: Vec<&String> = isolate.iter().filter(|n| *n != "all").collect();
    if named.is_empty() {
        return Ok(());
    }
    let mut known: Vec<String> = config.plugins().map(|(name, _)| name.to_owned()).collect();
    for path in host::discover(dirs)? {
        // A file that cannot be read is refused when loaded, with its own message.
        if let Ok(provenance) = host::read_provenance(&path) {
            known.push(provenance.name);
        }
    }
    for name in named {
        if known.iter().any(|k| k == name) {
            continue;
        }
        let hint = match host::config::suggest(name, known.iter().map(String::as_str)) {
            Some(close) => format!("did you mean `--isolate {}`?", printable(&close)),
            None if known.is_empty() => "no plugin was found there".to_owned(),
            None => {
                let mut names: Vec<String> = known.iter().map(|k| printable(k).into()).collect();
                names.sort();
                names.dedup();
                format!("the plugins there are: {}", names.join(", "))
            }
        };
        bail!(
            "--isolate {}: no plugin of that name in the plugin directories ({}); {hint} \
             (`--isolate all` isolates every plugin)",
            printable(name),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Warns, once, when `--call-timeout` was given but some of the plugins about to be called
/// (the providers of `capabilities`, `(kind, name)`) run in-process, where a call cannot be
/// stopped: the deadline applies only to isolated plugins.
pub fn warn_timeout_in_process(
    host: &Host,
    timeout: Option<Duration>,
    capabilities: &[(&str, &str)],
) {
    let Some(timeout) = timeout else { return };
    #[cfg(unix)]
    let isolated: Vec<String> = plugin_isolate::isolated(host)
        .into_iter()
        .map(|p| p.name)
        .collect();
    // No plugin is isolated where there is no isolation.
    #[cfg(not(unix))]
    let isolated: Vec<String> = Vec::new();
    let mut in_process: Vec<&str> = Vec::new();
    for (kind, name) in capabilities {
        let Some(provider) = host.registry().provider(kind, name) else {
            continue;
        };
        let builtin = host
            .plugins()
            .iter()
            .any(|p| p.builtin && *p.name == *provider);
        if !builtin && !isolated.iter().any(|i| i == provider) && !in_process.contains(&provider) {
            in_process.push(provider);
        }
    }
    if in_process.is_empty() {
        return;
    }
    let names: Vec<String> = in_process
        .iter()
        .map(|p| format!("`{}`", printable(p)))
        .collect();
    let flags: Vec<String> = in_process
        .iter()
        .map(|p| format!("--isolate {}", printable(p)))
        .collect();
    let (plugins, they_run) = if names.len() == 1 {
        ("plugin", "it runs")
    } else {
        ("plugins", "they run")
    };
    tracing::warn!(
        "--call-timeout {}s does not apply to {plugins} {}: {they_run} in-process, where a \
         call cannot be stopped; a deadline needs isolation: add `{}` (or `--isolate all`, or \
         `isolation = \"process\"` in the plugin's `[plugins.NAME]` table)",
        timeout.as_secs_f64(),
        names.join(", "),
        flags.join(" ")
    );
}
