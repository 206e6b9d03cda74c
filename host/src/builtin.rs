//! Builtins: plugins compiled into the host, registered through the same
//! `register(initializer, logger)` path as loaded ones (see [`plugin_api::builtin_plugin!`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use plugin_api::Builtin;

use crate::error::PluginError;
use crate::host::{Entry, Host};
use crate::report::{PluginReport, Status};

/// The path reported for a builtin (and recorded in its [`crate::LoadedPlugin::path`]).
pub const BUILTIN_PATH: &str = "<builtin>";

/// The builtins a host has been given and not registered yet, and the names an external
/// plugin may take over.
#[derive(Default)]
pub(crate) struct Builtins {
    pending: Vec<Builtin>,
    replaceable: HashSet<String>,
}

impl Host {
    /// Adds a plugin compiled into the host. It is registered at the start of the next
    /// [`Host::scan`] (reported first, as [`Status::Builtin`]), through the very same
    /// registration as a loaded plugin: configuration, kinds, capability checks and conflicts
    /// are identical. An external plugin of the same name is then `duplicate-plugin`,
    /// unless [`Host::with_replaceable_builtin`] allows it to take the builtin's place.
    pub fn with_builtin(mut self, builtin: Builtin) -> Self {
        self.builtins.pending.push(builtin);
        self
    }

    /// Lets an external plugin named `name` replace the builtin of that name: when a scan
    /// finds a plugin file carrying that name, the builtin is not registered and the file is
    /// loaded as any other (if it is then refused, neither is there).
    pub fn with_replaceable_builtin(mut self, name: impl Into<String>) -> Self {
        self.builtins.replaceable.insert(name.into());
        self
    }

    /// Registers a builtin now (no replacement applies): [`Status::Builtin`], or `failed`
    /// with the reason a loaded plugin would get.
    pub fn add_builtin(&mut self, builtin: Builtin) -> PluginReport {
        let name = builtin.name.as_str().to_owned();
        let path = PathBuf::from(BUILTIN_PATH);
        let mut report = PluginReport::new(path.clone());
        report.name = Some(name.clone());
        report.version = Some(builtin.version.as_str().to_owned());
        if let Some(first) = self.plugins().iter().find(|p| *p.name == name) {
            let error = PluginError::Duplicate {
                path,
                name,
                first: first.path.clone(),
            };
            return report.with_error(Status::Failed, error);
        }
        let mut provenance = self.identity().provenance.clone();
        provenance.name.clone_from(&name);
        // Compiled in: it may register what it likes, and is never indexed.
        provenance.capabilities = None;
        if let Ok(version) = builtin.version.as_str().parse() {
            provenance.version = version;
        }
        let watch = crate::watch::enter(
            format!("registering builtin plugin `{name}`"),
            self.hang_warning(),
        );
        let entry = Entry {
            resolved: path.clone(),
            path,
            name,
            register: builtin.register,
            differences: Vec::new(),
            provenance,
            builtin: true,
        };
        self.register_entry(report, entry, watch)
    }

    /// Registers the pending builtins, except those a file among `candidates` replaces.
    pub(crate) fn register_builtins(&mut self, candidates: &[PathBuf]) -> Vec<PluginReport> {
        let pending = std::mem::take(&mut self.builtins.pending);
        let replaced = if pending
            .iter()
            .any(|b| self.builtins.replaceable.contains(b.name.as_str()))
        {
            replacements(candidates, &self.builtins.replaceable)
        } else {
            HashSet::new()
        };
        let mut reports = Vec::new();
        for builtin in pending {
            if replaced.contains(builtin.name.as_str()) {
                tracing::info!(
                    "builtin plugin `{}` is replaced by a plugin file of that name",
                    crate::text::printable(builtin.name.as_str())
                );
                continue;
            }
            reports.push(self.add_builtin(builtin));
        }
        reports
    }
}

/// The replaceable names some file among `candidates` carries (its provenance, read without
/// loading it).
fn replacements(candidates: &[PathBuf], replaceable: &HashSet<String>) -> HashSet<String> {
    candidates
        .iter()
        .filter_map(|p: &PathBuf| crate::read::read_provenance(Path::new(p)).ok())
        .map(|p| p.name)
        .filter(|n| replaceable.contains(n))
        .collect()
}
