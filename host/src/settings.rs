//! Per-plugin settings an application applies by plugin name (usually from its configuration
//! file, [`crate::config`]): a policy of its own, disabled, or a file configured for it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::host::Host;
use crate::policy::Policy;

/// Settings by plugin name.
#[derive(Default)]
pub(crate) struct Settings {
    policies: HashMap<String, Policy>,
    disabled: HashSet<String>,
    /// Files configured for a plugin, in the order given, with the name each must carry.
    files: Vec<(PathBuf, String)>,
}

impl Host {
    /// Judges the plugin named `name` under `policy` instead of the host's.
    pub fn with_plugin_policy(mut self, name: impl Into<String>, policy: Policy) -> Self {
        self.settings.policies.insert(name.into(), policy);
        self
    }

    /// Never loads the plugin named `name`: a file carrying that name is reported
    /// [`crate::Status::Disabled`] once its provenance is read (no plugin code runs).
    pub fn with_disabled(mut self, name: impl Into<String>) -> Self {
        self.settings.disabled.insert(name.into());
        self
    }

    /// Names the file of the plugin `name`: every scan considers it before the files found
    /// in directories (so it wins over another file of that name), and it is refused
    /// `name-mismatch` when it turns out to carry another name.
    pub fn with_plugin_file(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.settings.files.push((path.into(), name.into()));
        self
    }

    /// The policy the plugin named `name` is judged under.
    pub(crate) fn policy_for(&self, name: &str) -> &Policy {
        self.settings.policies.get(name).unwrap_or(self.policy())
    }

    /// Whether the plugin named `name` is disabled.
    pub(crate) fn is_disabled(&self, name: &str) -> bool {
        self.settings.disabled.contains(name)
    }

    /// The name the file at `path` must carry, when it was configured for a plugin.
    pub(crate) fn configured_name(&self, path: &Path) -> Option<&str> {
        self.settings
            .files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, n)| n.as_str())
    }

    /// The configured files, then the `found` ones (a configured file found again in a
    /// directory is listed once, first).
    pub(crate) fn candidates(&self, found: Vec<PathBuf>) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self.settings.files.iter().map(|(p, _)| p.clone()).collect();
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if all.is_empty() {
            return found;
        }
        for path in found {
            if !all.iter().any(|c| same(c, &path)) {
                all.push(path);
            }
        }
        all
    }
}
