//! The flags that set up a host, shared by the commands that verify or load plugins: the
//! policy, loading and isolation, and the plugin directories with the trust flags.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use host::config::Config;
use host::{HostIdentity, LoadFrom, PluginSettings, Policy};
#[cfg(unix)]
use plugin_isolate::Mode;

use crate::configured::{PolicyFlags, Setup};

#[derive(Args)]
pub struct PolicyArgs {
    /// Policy preset: `default` or `strict` (default: the configuration's `[policy] preset`,
    /// else `default`).
    #[arg(long)]
    pub policy: Option<String>,
    /// Override one check: CHECK=ignore|warn|fail (checks: rustc, panic-strategy, profile, dependencies).
    #[arg(long = "set", value_name = "CHECK=LEVEL")]
    pub overrides: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Map each plugin from its file instead of from a private copy: writing to a plugin
    /// file in place while the host runs changes the code it runs or crashes it (SIGBUS).
    #[arg(long, conflicts_with_all = ["keep_copies", "sealed_copies"])]
    pub load_in_place: bool,
    /// Keep each plugin's private copy between runs, in a store of this user's (DIR, or
    /// $XDG_RUNTIME_DIR/plugin-host-copies, else /dev/shm/plugin-host-copies-UID): later
    /// runs map it instead of copying again, skip the layout check this build of plugin-host
    /// made of it, and processes share its pages. The default where $XDG_RUNTIME_DIR is a
    /// private directory of this user's (then kept in it); else --sealed-copies is.
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true)]
    #[arg(conflicts_with = "sealed_copies")]
    pub keep_copies: Option<Option<std::path::PathBuf>>,
    /// Make a sealed private copy of each plugin at every load and keep nothing between
    /// runs. The default where $XDG_RUNTIME_DIR is not a private directory of this user's.
    #[arg(long)]
    pub sealed_copies: bool,
    /// Warn when a plugin's constructors or `register` have run this long (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = host::DEFAULT_HANG_WARNING.as_secs_f64())]
    pub hang_warning: f64,
    /// Configuration for one plugin: NAME=CONFIG (repeatable).
    #[arg(long = "plugin-config", value_name = "NAME=CONFIG")]
    pub configs: Vec<String>,
    /// Let a plugin file named NAME replace the builtin plugin of that name (repeatable).
    #[arg(long = "replace-builtin", value_name = "NAME")]
    pub replace_builtins: Vec<String>,
    /// Run plugin NAME (or `all` plugins) in a worker process of its own (repeatable); see
    /// the book's "Isolation" chapter.
    #[arg(long = "isolate", value_name = "NAME|all")]
    pub isolate: Vec<String>,
    /// The deadline of each call into an isolated plugin, e.g. `2s`, `500ms`, `1m`
    /// (default 30s, at most 1 day); past it the worker is killed and the call fails
    /// `plugin-timeout`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub call_timeout: Option<std::time::Duration>,
    /// A worker binary built with another toolchain (repeatable; `plugin-host builder
    /// worker` builds one): a plugin refused in-process for a toolchain difference runs
    /// isolated in the first one it matches. Added before the configuration's `[isolation]
    /// workers`. See "Skewed plugins" in the book's "Isolation" chapter.
    #[arg(long = "worker", value_name = "PATH")]
    pub workers: Vec<PathBuf>,
}

/// The longest `--call-timeout`: one day. Longer is refused at parse time (a deadline is
/// `now + timeout`, which overflows for absurd values such as `1e19s`).
const MAX_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Parses a duration: a number with a unit, `ms`, `s` or `m` (`500ms`, `2s`, `1.5s`, `1m`).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!(
            "`{text}` has no unit: write e.g. `2s`, `500ms` or `1m`"
        ));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `2s`, `500ms` or `1m`"))?;
    let seconds = value * scale;
    if seconds > MAX_CALL_TIMEOUT.as_secs_f64() {
        return Err(format!(
            "`{text}` is longer than the longest deadline, {}s (one day)",
            MAX_CALL_TIMEOUT.as_secs()
        ));
    }
    let duration =
        std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))?;
    if duration.is_zero() {
        return Err(format!("`{text}`: a deadline must be longer than zero"));
    }
    Ok(duration)
}

impl LoadArgs {
    /// What plugins are loaded from: as a flag says, else copies kept in this user's
    /// private runtime directory where there is one, else sealed copies
    /// ([`LoadFrom::preferred`]).
    fn load_from(&self) -> LoadFrom {
        if self.load_in_place {
            LoadFrom::File
        } else if self.keep_copies.is_some() {
            LoadFrom::KeptCopy
        } else if self.sealed_copies {
            LoadFrom::SealedCopy
        } else {
            LoadFrom::preferred()
        }
    }

    /// These flags applied to `host`; the workers are `--worker`'s, then `config`'s.
    pub fn apply(&self, config: &Config, setup: Setup) -> Result<Setup> {
        let Setup {
            mut host,
            #[cfg(unix)]
            mut isolation,
        } = setup;
        host = host.load_from(self.load_from());
        if let Some(Some(dir)) = &self.keep_copies {
            host = host.copy_store(dir);
        }
        let hang = std::time::Duration::try_from_secs_f64(self.hang_warning)
            .map_err(|e| anyhow!("--hang-warning {}: {e}", self.hang_warning))?;
        host = host.hang_warning((!hang.is_zero()).then_some(hang));
        for c in &self.configs {
            let (name, config) = c
                .split_once('=')
                .ok_or_else(|| anyhow!("--plugin-config expects NAME=CONFIG, got `{c}`"))?;
            host = host.plugin(name, PluginSettings::new().config(config));
        }
        for name in &self.replace_builtins {
            host = host.plugin(name, PluginSettings::new().replaces_builtin());
        }
        #[cfg(unix)]
        {
            for name in &self.isolate {
                // Applied after the files: `all` wins over what one said of a plugin.
                isolation = if name == "all" {
                    isolation.every_plugin(Mode::Process)
                } else {
                    isolation.plugin(name, Mode::Process)
                };
            }
            if let Some(timeout) = self.call_timeout {
                isolation = isolation.call_timeout(timeout);
            }
            for worker in crate::configured::workers(&self.workers, config) {
                isolation = isolation.worker(worker);
            }
        }
        #[cfg(not(unix))]
        self.refuse_isolation(config)?;
        // ANCHOR: with_builtin
        let host = host.builtin(crate::builtins::BUILTIN);
        // ANCHOR_END: with_builtin
        Ok(Setup {
            host,
            #[cfg(unix)]
            isolation,
        })
    }

    /// Without process isolation, its flags and the configuration's workers are errors, not
    /// silently ignored.
    #[cfg(not(unix))]
    fn refuse_isolation(&self, config: &Config) -> Result<()> {
        use crate::unix_only::isolation;
        if !self.isolate.is_empty() {
            return Err(isolation("`--isolate`"));
        }
        if self.call_timeout.is_some() {
            return Err(isolation("`--call-timeout`"));
        }
        if !self.workers.is_empty() {
            return Err(isolation("`--worker`"));
        }
        if let Some(worker) = config.workers().first() {
            return Err(isolation(&format!(
                "`[isolation] workers` ({})",
                worker.origin
            )));
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct PluginArgs {
    /// Plugin directory (repeatable; default: the configured search paths), searched in
    /// order: the first plugin that declares the capability is loaded, and only it (plugins
    /// declaring none are loaded up front).
    #[arg(long = "plugins", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub trust: crate::trust_cli::TrustArgs,
}

impl PolicyArgs {
    pub fn flags(&self) -> Result<PolicyFlags> {
        PolicyFlags::parse(self.policy.as_deref(), &self.overrides)
    }

    /// The host's policy: these flags over the configuration's.
    pub fn build(&self, config: &Config) -> Result<Policy> {
        self.flags()?.global(config)
    }

    /// A host with the configuration's policies and plugin tables, these flags over them.
    pub fn host(&self, config: &Config) -> Result<Setup> {
        crate::configured::apply(config, &self.flags()?, Setup::new(identity()?))
    }
}

/// The host's identity: this binary's own provenance.
pub fn identity() -> Result<HostIdentity> {
    HostIdentity::from_blob(plugin_api::provenance_blob!())
        .context("the host's own embedded provenance is unreadable")
}
