//! The typed settings a layer sets, and the effective ones after merging.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::origin::Valued;
use super::table::PluginConfig;
use crate::policy::{CheckKind, Policy, Severity};
use crate::trust::SignatureMode;

/// How a plugin is run: loaded into the host, or in a worker process of its own
/// (the `plugin-isolate` crate: `Isolation::plugin`). Ordered from the least isolated
/// to the most (`InProcess < Process`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Loaded into the host process (the default).
    #[default]
    InProcess,
    /// In a worker process of its own.
    Process,
}

impl Isolation {
    /// Every mode, as written in configuration.
    pub const ALL: &'static [Isolation] = &[Isolation::InProcess, Isolation::Process];

    /// `in-process` or `process`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }

    /// Parses `in-process` or `process`.
    pub fn parse(s: &str) -> Option<Isolation> {
        Self::ALL.iter().copied().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `[plugins.NAME]` table: one layer's, or the effective one (each key from the last layer
/// that set it; `config` merged key by key).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PluginSettings {
    /// `path`: the plugin file, resolved against its file's directory (it exists).
    pub path: Option<Valued<PathBuf>>,
    /// `enabled` (unset: enabled).
    pub enabled: Option<Valued<bool>>,
    /// `config`: the table handed to the plugin.
    pub config: PluginConfig,
    /// `policy`: a preset for this plugin.
    pub preset: Option<Valued<String>>,
    /// `checks`: per-check severities for this plugin.
    pub checks: BTreeMap<CheckKind, Valued<Severity>>,
    /// `signatures`: this plugin's signature mode.
    pub signatures: Option<Valued<SignatureMode>>,
    /// `replace-builtin`: a plugin file of a builtin's name may replace the builtin.
    pub replace_builtin: Option<Valued<bool>>,
    /// `isolation`: in-process (the default) or in a worker process.
    pub isolation: Option<Valued<Isolation>>,
    /// `source`: the OCI reference `plugin-host sync` installs the plugin from.
    pub source: Option<Valued<String>>,
    /// The policy override built from `policy`/`checks` (set on the effective settings).
    pub(crate) policy: Option<Policy>,
}

impl PluginSettings {
    /// Whether the plugin is enabled (default: yes).
    pub fn enabled(&self) -> bool {
        self.enabled.as_ref().is_none_or(|v| v.value)
    }

    /// The plugin's configuration string (its `config` table as TOML text), `None` when no
    /// layer gave it one.
    pub fn config_text(&self) -> Option<String> {
        (!self.config.is_empty()).then(|| self.config.to_toml())
    }

    /// The plugin's own policy when it has `policy` or `checks`, else `None` (the global policy
    /// applies). It starts from the plugin's `policy` preset when given, else from the global
    /// policy (preset and checks); the plugin's `checks` apply last.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The plugin's signature mode, when configured for it.
    pub fn signature_mode(&self) -> Option<SignatureMode> {
        self.signatures.as_ref().map(|v| v.value)
    }

    /// Whether a plugin file of this name may replace the builtin of the same name.
    pub fn replace_builtin(&self) -> bool {
        self.replace_builtin.as_ref().is_some_and(|v| v.value)
    }

    /// How the plugin is to be run (default `in-process`).
    pub fn isolation(&self) -> Isolation {
        self.isolation.as_ref().map(|v| v.value).unwrap_or_default()
    }

    /// Lays `later` over `self`, key by key.
    pub(crate) fn merge(&mut self, later: PluginSettings) {
        fn over<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        over(&mut self.path, later.path);
        over(&mut self.source, later.source);
        over(&mut self.enabled, later.enabled);
        self.config.merge(later.config);
        over(&mut self.preset, later.preset);
        self.checks.extend(later.checks);
        over(&mut self.signatures, later.signatures);
        over(&mut self.replace_builtin, later.replace_builtin);
        over(&mut self.isolation, later.isolation);
    }
}

/// The `[trust]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Trust {
    /// `keys`: trusted minisign public keys (the base64 line of a `.pub` file), each with its
    /// origin; the array of the last layer that set it.
    pub keys: Vec<Valued<String>>,
    /// `signatures`: the signature mode.
    pub signatures: Option<Valued<SignatureMode>>,
}

impl Trust {
    /// The effective signature mode: as configured, else `warn` when any key is trusted, else
    /// `ignore`.
    pub fn mode(&self) -> SignatureMode {
        match &self.signatures {
            Some(v) => v.value,
            None if !self.keys.is_empty() => SignatureMode::Warn,
            None => SignatureMode::Ignore,
        }
    }
}
