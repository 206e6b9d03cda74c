//! The host as configured: the configuration files' layers ([`host::config`]) with the
//! command line's flags over them (flags override every file).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use host::config::Config;
use host::text::printable;
use host::{CheckKind, Host, HostBuilder, PluginSettings, Policy, Severity};
#[cfg(unix)]
use plugin_isolate::Isolation;

/// The policy flags of the command line, parsed.
#[derive(Default)]
pub struct PolicyFlags {
    /// `--policy`, when given.
    pub preset: Option<String>,
    /// `--set CHECK=LEVEL`, in order.
    pub checks: Vec<(CheckKind, Severity)>,
}

impl PolicyFlags {
    /// Parses `--policy` and the `--set` overrides.
    pub fn parse(preset: Option<&str>, overrides: &[String]) -> Result<Self> {
        let mut checks = Vec::new();
        for o in overrides {
            let (check, level) = o
                .split_once('=')
                .ok_or_else(|| anyhow!("--set expects CHECK=LEVEL, got `{o}`"))?;
            let names: Vec<_> = CheckKind::ALL.iter().map(|c| c.as_str()).collect();
            let check = CheckKind::parse(check).ok_or_else(|| {
                anyhow!(
                    "unknown check `{check}` in --set; checks: {}",
                    names.join(", ")
                )
            })?;
            let level = Severity::parse(level).ok_or_else(|| {
                anyhow!("unknown level `{level}` in --set; levels: ignore, warn, fail")
            })?;
            checks.push((check, level));
        }
        if let Some(preset) = preset {
            Policy::preset(preset)?;
        }
        Ok(PolicyFlags {
            preset: preset.map(str::to_owned),
            checks,
        })
    }

    /// The host's policy: the preset from `--policy`, else the configuration's, else
    /// `default`; then the configuration's `[policy.checks]`; then `--set`.
    pub fn global(&self, config: &Config) -> Result<Policy> {
        let preset = match (&self.preset, config.policy_preset()) {
            (Some(flag), _) => flag.as_str(),
            (None, Some(configured)) => configured.value.as_str(),
            (None, None) => "default",
        };
        let mut policy = Policy::preset(preset)?;
        for (check, severity) in config.policy_checks() {
            policy.set(*check, severity.value)?;
        }
        self.apply(policy)
    }

    /// The policy of a plugin whose table sets `policy` or `checks`: its preset (unless
    /// `--policy` says otherwise) and checks, then `--set`.
    fn plugin(&self, config: &Config, name: &str) -> Result<Option<Policy>> {
        let Some(settings) = config.plugin(name) else {
            return Ok(None);
        };
        if settings.preset.is_none() && settings.checks.is_empty() {
            return Ok(None);
        }
        let mut policy = match (&self.preset, &settings.preset) {
            (Some(flag), _) => Policy::preset(flag)?,
            (None, Some(own)) => Policy::preset(&own.value)?,
            (None, None) => self.global(config)?,
        };
        if self.preset.is_some() || settings.preset.is_none() {
            for (check, severity) in config.policy_checks() {
                policy.set(*check, severity.value)?;
            }
        }
        for (check, severity) in &settings.checks {
            policy.set(*check, severity.value)?;
        }
        self.apply(policy).map(Some)
    }

    fn apply(&self, mut policy: Policy) -> Result<Policy> {
        for (check, severity) in &self.checks {
            policy.set(*check, *severity)?;
        }
        Ok(policy)
    }
}

/// A host being set up from the configuration and the command line: the host's settings,
/// and those of the isolation placement it gets when built.
pub struct Setup {
    pub host: HostBuilder,
    #[cfg(unix)]
    pub isolation: Isolation,
}

impl Setup {
    /// A host for this application with nothing set yet.
    pub fn new(identity: host::HostIdentity) -> Self {
        Setup {
            host: Host::builder(identity),
            #[cfg(unix)]
            isolation: Isolation::new(),
        }
    }

    /// The host, placing the plugins the settings isolate in workers.
    #[cfg(unix)]
    pub fn build(self) -> Host {
        self.host.placement(self.isolation).build()
    }

    /// The host: every plugin in-process (no isolation here).
    #[cfg(not(unix))]
    pub fn build(self) -> Host {
        self.host.build()
    }
}

/// Applies the configuration's policies and `[plugins.NAME]` tables to `setup`. The command
/// line's own per-plugin flags are applied after this, so they win.
pub fn apply(config: &Config, flags: &PolicyFlags, mut setup: Setup) -> Result<Setup> {
    setup.host = setup.host.policy(flags.global(config)?);
    for (name, settings) in config.plugins() {
        if let Some(isolation) = &settings.isolation {
            #[cfg(unix)]
            {
                setup.isolation = setup.isolation.plugin(name, isolation.value);
            }
            #[cfg(not(unix))]
            if isolation.value == host::config::Isolation::Process {
                return Err(crate::unix_only::isolation(&format!(
                    "`isolation = \"process\"` (plugin `{}`, {})",
                    printable(name),
                    isolation.origin
                )));
            }
        }
        let mut plugin = PluginSettings::new();
        if let Some(policy) = flags.plugin(config, name)? {
            plugin = plugin.policy(policy);
        }
        if !settings.enabled() {
            plugin = plugin.disabled();
        }
        if let Some(path) = &settings.path {
            plugin = plugin.file(path.value.clone());
        }
        if let Some(text) = settings.config_text() {
            plugin = plugin.config(text);
        }
        if settings.replace_builtin() {
            plugin = plugin.replaces_builtin();
        }
        setup.host = setup.host.plugin(name, plugin);
    }
    Ok(setup)
}

#[cfg(unix)]
/// The worker binaries to register, in the order they are tried: the ones given on the
/// command line (`--worker`) first, then the configuration's `[isolation] workers` — the flags
/// add to the configured list, as `--trusted-key` does to `[trust] keys`. A path given both
/// ways is registered once, where the flag puts it.
pub fn workers(given: &[PathBuf], config: &Config) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let configured = config.workers().iter().map(|w| &w.value);
    for path in given.iter().chain(configured) {
        if !out.contains(path) {
            out.push(path.clone());
        }
    }
    out
}

/// The directories to scan: the ones given on the command line, else the configured search
/// paths (or their defaults). Empty is an error that says where plugins are looked for, and
/// how to give a directory to this command: `give` (`scan DIR`, `--plugins DIR`).
pub fn search_paths(given: &[PathBuf], config: &Config, give: &str) -> Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let paths = config.search_paths();
    if paths.is_empty() {
        let looked: Vec<String> = config
            .default_search_paths_considered()
            .iter()
            .map(|p| printable(&p.display().to_string()).into_owned())
            .collect();
        bail!(
            "no plugin directory: give one (`{give}`), set `[search] paths` in {}.toml, or \
             install plugins in one of the default search paths ({})",
            config.app(),
            looked.join(", ")
        );
    }
    Ok(paths)
}
