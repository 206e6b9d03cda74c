//! Builtins: plugins compiled into the host, registered through the same
//! `register(initializer, logger)` path as loaded ones (see [`plugin_api::builtin_plugin!`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use plugin_api::provenance::Provenance;
use plugin_api::Builtin;

/// The path reported for a builtin (and recorded in its [`crate::LoadedPlugin::path`]).
pub const BUILTIN_PATH: &str = "<builtin>";

/// The builtins a host has been given and not registered yet, and the names an external
/// plugin may take over.
#[derive(Default)]
pub(crate) struct Builtins {
    pending: Vec<Builtin>,
    replaceable: HashSet<String>,
}

impl Builtins {
    /// Adds a builtin to register at the next scan or index.
    pub(crate) fn add(&mut self, builtin: Builtin) {
        self.pending.push(builtin);
    }

    /// Lets a plugin file named `name` take the builtin's place.
    pub(crate) fn replaceable(&mut self, name: String) {
        self.replaceable.insert(name);
    }

    /// Whether a pending builtin may be replaced by a plugin file (then [`Builtins::take`]
    /// reads the candidates' names).
    pub(crate) fn may_be_replaced(&self) -> bool {
        self.pending
            .iter()
            .any(|b| self.replaceable.contains(b.name.as_str()))
    }

    /// The pending builtins to register now: all but those a file among `candidates`
    /// replaces. A file replaces a builtin when it carries the builtin's name (its
    /// provenance, read without loading it) and `admitted` says the host would take it
    /// (verified: trust, policy, settings); a file that would be refused leaves the builtin
    /// in place, where it would have left that name provided by nothing.
    pub(crate) fn take(
        &mut self,
        candidates: &[PathBuf],
        admitted: impl Fn(&Path) -> bool,
    ) -> Vec<Builtin> {
        let mut pending = std::mem::take(&mut self.pending);
        if !pending
            .iter()
            .any(|b| self.replaceable.contains(b.name.as_str()))
        {
            return pending;
        }
        let replaced: HashSet<String> = candidates
            .iter()
            .filter_map(|p| {
                let name = crate::read::read_provenance(Path::new(p)).ok()?.name;
                (self.replaceable.contains(&name) && admitted(p)).then_some(name)
            })
            .collect();
        pending.retain(|builtin| {
            let keep = !replaced.contains(builtin.name.as_str());
            if !keep {
                tracing::info!(
                    "builtin plugin `{}` is replaced by a plugin file of that name",
                    crate::text::printable(builtin.name.as_str())
                );
            }
            keep
        });
        pending
    }
}

/// A builtin's provenance: the host's own, under the builtin's name and version. Compiled in,
/// it may register what it likes, and is never indexed.
pub(crate) fn provenance_of(builtin: &Builtin, host: &Provenance) -> Provenance {
    let mut provenance = host.clone();
    provenance.name = builtin.name.as_str().to_owned();
    provenance.capabilities = None;
    if let Ok(version) = builtin.version.as_str().parse() {
        provenance.version = version;
    }
    provenance
}
