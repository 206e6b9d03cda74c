//! Lazy loading: a capability index built from provenance alone, and libraries loaded only
//! when one of their capabilities is first used.
//!
//! [`Host::index`] discovers the plugin files of the search path and reads each one's
//! provenance (no trust step, no judging, nothing loaded). A plugin that declares its
//! capabilities (`[package.metadata.plugin-host] capabilities = { command = ["hello"] }` in
//! its `Cargo.toml`, recorded by `plugin_api::build::record`) is indexed under each of them.
//! [`Host::get_lazy`] (or [`Host::load_capability`]) then finds the plugin that declared the
//! capability asked for and takes it through the normal path — open, read, trust, judge, load,
//! register — exactly as [`Host::load`] does: the index only chooses which file to verify.
//!
//! Rules:
//! - **Path order wins.** Directories in the order given, files by name within each. When two
//!   files carry the same plugin name, the first is used and the others are reported
//!   [`Status::Shadowed`], naming the first. When two plugins declare the same capability,
//!   the first is loaded; the next is tried only if the first cannot be used. Loading a
//!   plugin loads first the plugins earlier in path order that declare one of its
//!   capabilities too, so an overlap ends as in a scan: the later plugin is refused
//!   (`capability-conflict`).
//! - **Undeclared plugins are loaded up front.** A plugin without a declaration (built by an
//!   older recorder, or without the table) cannot be indexed: `index` loads it at once, as
//!   a scan would. So is nothing else.
//! - **Builtins** are registered by `index` (as by a scan), before any file.
//! - A capability already in the registry (a builtin's, an undeclared plugin's, or one loaded
//!   earlier) is used as it is.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use plugin_api::CapabilityKind;

mod cache;

use crate::discover::{discover, DiscoverError};
use crate::error::PluginError;
use crate::host::Host;
use crate::reason::ReasonCode;
use crate::registry::LookupError;
use crate::report::{PluginReport, Status};

/// A plugin file the index knows by its declaration.
#[derive(Debug, Clone)]
pub struct IndexedPlugin {
    /// The file, as found in the search path.
    pub path: PathBuf,
    /// Its plugin name.
    pub name: String,
    /// The capabilities it declares, by kind.
    pub capabilities: BTreeMap<String, Vec<String>>,
    /// What became of it so far.
    pub state: IndexedState,
}

/// Whether an indexed plugin was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexedState {
    /// Not loaded: none of its capabilities was asked for yet.
    Pending,
    /// Verified, loaded and registered.
    Loaded,
    /// Tried, and refused or failed: the reason and message of its report.
    Refused(ReasonCode, String),
}

/// The capability index of a host (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Index {
    plugins: Vec<IndexedPlugin>,
    /// `(kind, capability)` → the indexed plugins that declare it, in path order.
    by_capability: HashMap<(String, String), Vec<usize>>,
    /// Every plugin name met so far → the first file carrying it.
    names: HashMap<String, PathBuf>,
    /// Every file `index` considered, in path order: what [`Host::reindex_without_cache`]
    /// reads and places again.
    considered: Vec<PathBuf>,
    /// The files `index` already reported (loaded at once, verified and refused, shadowed):
    /// not reported again.
    settled: std::collections::HashSet<PathBuf>,
    /// The files whose name and declaration came from the index cache, not from the file.
    cached: std::collections::HashSet<PathBuf>,
}

/// What the index made of one file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Indexed under its declared capabilities.
    Indexed,
    /// A file earlier in path order carries the same plugin name.
    Shadowed(PathBuf),
    /// It declares nothing: to be loaded now.
    Undeclared,
}

impl Index {
    /// Places one file (in path order) by its provenance.
    pub(crate) fn add(
        &mut self,
        path: &Path,
        name: &str,
        declared: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Placed {
        if let Some(first) = self.names.get(name) {
            return Placed::Shadowed(first.clone());
        }
        self.names.insert(name.to_owned(), path.to_owned());
        let Some(declared) = declared else {
            return Placed::Undeclared;
        };
        let at = self.plugins.len();
        for (kind, names) in declared {
            for name in names {
                self.by_capability
                    .entry((kind.clone(), name.clone()))
                    .or_default()
                    .push(at);
            }
        }
        self.plugins.push(IndexedPlugin {
            path: path.to_owned(),
            name: name.to_owned(),
            capabilities: declared.clone(),
            state: IndexedState::Pending,
        });
        Placed::Indexed
    }

    /// The indexed plugins declaring `(kind, name)`, in path order.
    pub(crate) fn candidates(&self, kind: &str, name: &str) -> Vec<usize> {
        self.by_capability
            .get(&(kind.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// The capability names of `kind` that indexed plugins not refused declare.
    pub(crate) fn names(&self, kind: &str) -> Vec<String> {
        self.plugins
            .iter()
            .filter(|p| !matches!(p.state, IndexedState::Refused(..)))
            .filter_map(|p| p.capabilities.get(kind))
            .flatten()
            .cloned()
            .collect()
    }
}

/// Why [`Host::load_capability`] could not make a capability available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LazyError {
    /// No plugin provides it, or it is there but unusable (see [`LookupError`]).
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The plugin that declares it was refused or failed (and so was every other that
    /// declares it): the reason and message of its report.
    #[error("{kind} `{name}` is declared by plugin `{plugin}`, which could not be used: {message} [{reason}]")]
    Refused {
        /// The kind asked for.
        kind: String,
        /// The capability asked for.
        name: String,
        /// The plugin tried (the first in path order, when several were).
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Its report's reason code.
        reason: ReasonCode,
        /// Its report's message.
        message: String,
    },
    /// The plugin that declares it loaded and registered, but did not register it.
    #[error(
        "plugin `{plugin}` ({}) declares {kind} `{name}` but did not register it (it \
         registered: {}); report it to the plugin's author",
        path.display(),
        if registered.is_empty() { "nothing".to_owned() } else { registered.join(", ") }
    )]
    NotRegistered {
        /// The kind asked for.
        kind: String,
        /// The capability asked for.
        name: String,
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// What it did register, as `kind:name`.
        registered: Vec<String>,
    },
}

impl LazyError {
    /// The reason code behind the error, when there is one.
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            LazyError::Lookup(e) => e.reason(),
            LazyError::Refused { reason, .. } => Some(*reason),
            LazyError::NotRegistered { .. } => None,
        }
    }
}

impl Host {
    /// Builds the capability index of `dirs` (in order) from provenance alone, registering
    /// the builtins first and loading at once the plugins that declare no capabilities (see
    /// the [module documentation](crate::lazy)). Returns the reports of what was decided now:
    /// builtins, files refused for unreadable provenance, shadowed files, files that take a
    /// builtin's name, and the plugins loaded up front. The indexed plugins are not reported
    /// until they are loaded ([`Host::lazy_reports`]); [`Host::indexed`] lists them.
    ///
    /// Calling it again adds more directories after those already indexed.
    pub fn index(&mut self, dirs: &[impl AsRef<Path>]) -> Result<Vec<PluginReport>, DiscoverError> {
        let paths = self.candidates(discover(dirs)?);
        let mut reports = self.register_builtins(&paths);
        let mut cache = self.index_cache.clone().map(cache::Cache::load);
        for path in paths {
            let read;
            let (name, version, declared) = match cache.as_mut().and_then(|c| c.get(&path)) {
                Some(e) => {
                    self.lazy.cached.insert(path.clone());
                    (e.name.as_str(), e.version.as_str(), e.capabilities.as_ref())
                }
                None => match crate::read::read_provenance(&path) {
                    Ok(p) => {
                        if let Some(cache) = &mut cache {
                            cache.put(&path, &p);
                        }
                        read = (p.name, p.version.to_string(), p.capabilities);
                        (read.0.as_str(), read.1.as_str(), read.2.as_ref())
                    }
                    Err(e) => {
                        let report = PluginReport::new(path);
                        reports.push(report.with_error(Status::Rejected, e.into()));
                        continue;
                    }
                },
            };
            let name = name.to_owned();
            self.lazy.considered.push(path.clone());
            let misnamed = self.configured_name(&path).is_some_and(|n| n != name);
            if misnamed || self.is_disabled(&name) {
                // Refused or disabled by the configuration: reported as a scan would, and
                // never indexed.
                reports.push(self.verify(&path));
                self.lazy.settled.insert(path);
                continue;
            }
            if self.plugins().iter().any(|p| p.builtin && *p.name == name) {
                // Not replaceable (a replaced builtin was never registered): a conflict,
                // judged as a scan would.
                reports.push(self.verify(&path));
                self.lazy.settled.insert(path);
                continue;
            }
            let placed = self.lazy.add(&path, &name, declared);
            if placed != Placed::Indexed {
                self.lazy.settled.insert(path.clone());
            }
            match placed {
                Placed::Indexed => {
                    tracing::debug!("indexed plugin `{name}` ({})", path.display());
                }
                Placed::Shadowed(first) => {
                    let mut report = PluginReport::new(path.clone());
                    report.name = Some(name.clone());
                    report.version = Some(version.to_owned());
                    let error = PluginError::Shadowed { path, name, first };
                    reports.push(report.with_error(Status::Shadowed, error));
                }
                Placed::Undeclared => {
                    tracing::debug!(
                        "plugin `{name}` ({}) declares no capabilities: loading it now",
                        path.display()
                    );
                    reports.push(self.load(&path));
                }
            }
        }
        if let Some(cache) = cache {
            let dirs: Vec<PathBuf> = dirs.iter().map(|d| d.as_ref().to_owned()).collect();
            cache.save(&dirs);
        }
        Ok(reports)
    }

    /// Keeps what [`Host::index`] reads from each file in a cache file at `path` (e.g.
    /// `$XDG_CACHE_HOME/<app>/index.json`), so the next index `stat`s each file instead of
    /// reading its provenance. An entry counts only for the very file it was made from (same
    /// device, inode, size, modification and change times); even a stale one only chooses
    /// which library to verify, which is then read, trusted and judged afresh before loading.
    pub fn with_index_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.index_cache = Some(path.into());
        self
    }

    /// The plugins in the index, in path order, and whether each was loaded.
    pub fn indexed(&self) -> &[IndexedPlugin] {
        &self.lazy.plugins
    }

    /// The reports of the plugins loaded (or tried) on first use, in that order.
    pub fn lazy_reports(&self) -> &[PluginReport] {
        &self.lazy_reports
    }

    /// Makes capability `name` of kind `kind` available in the [`Host::registry`]: at once if
    /// it is there, else by verifying, loading and registering the indexed plugin that
    /// declares it (the next one in path order if that one is refused or does not register
    /// it). No other library is opened, but for earlier plugins declaring one of the same
    /// capabilities (see the module documentation).
    pub fn load_capability(&mut self, kind: &str, name: &str) -> Result<(), LazyError> {
        if self.registry().provider(kind, name).is_some() {
            return Ok(());
        }
        // The first failure in path order, should no other plugin provide it.
        let mut failure = None;
        for at in self.lazy.candidates(kind, name) {
            let state = match &self.lazy.plugins[at].state {
                IndexedState::Pending => self.load_indexed(at),
                done => done.clone(),
            };
            if state == IndexedState::Loaded && self.registry().provider(kind, name).is_some() {
                return Ok(());
            }
            let plugin = &self.lazy.plugins[at];
            let (path, plugin_name) = (plugin.path.clone(), plugin.name.clone());
            let error = match state {
                IndexedState::Refused(reason, message) => LazyError::Refused {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    plugin: plugin_name,
                    path,
                    reason,
                    message,
                },
                // Loaded without it, but the index entry came from the cache: the entry is
                // stale or forged (another plugin's name and declaration). Read every file
                // again and start over; the error, if any, then names the right file.
                _ if self.lazy.cached.contains(&path) => {
                    self.reindex_without_cache(&path, &plugin_name, kind, name);
                    return self.load_capability(kind, name);
                }
                // Loaded without it: the declaration lied.
                _ => self.not_registered(kind, name, plugin_name, path),
            };
            failure.get_or_insert(error);
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let mut available = self.registry().names(kind);
        available.extend(self.lazy.names(kind));
        available.sort();
        available.dedup();
        Err(LookupError::NotFound {
            kind: kind.to_owned(),
            name: name.to_owned(),
            available,
        }
        .into())
    }

    /// Loads indexed plugin `at`, after the plugins earlier in path order that declare one of
    /// its capabilities too: as in a scan, where the earlier one registers first and the later
    /// one is then refused (`capability-conflict`), so an overlap is reported, not hidden by
    /// laziness. Only a misconfigured search path pays for those extra loads.
    fn load_indexed(&mut self, at: usize) -> IndexedState {
        let mut earlier: Vec<usize> = self.lazy.plugins[at]
            .capabilities
            .iter()
            .flat_map(|(kind, names)| names.iter().map(move |n| (kind, n)))
            .flat_map(|(kind, name)| self.lazy.candidates(kind, name))
            .filter(|&j| j < at)
            .collect();
        earlier.sort_unstable();
        earlier.dedup();
        for j in earlier {
            if self.lazy.plugins[j].state == IndexedState::Pending {
                self.load_indexed(j);
            }
        }
        let path = self.lazy.plugins[at].path.clone();
        let report = self.load(&path);
        let state = match (&report.reason, &report.message) {
            (Some(reason), Some(message)) => IndexedState::Refused(*reason, message.clone()),
            _ => IndexedState::Loaded,
        };
        self.lazy.plugins[at].state = state.clone();
        self.lazy_reports.push(report);
        state
    }

    /// [`Host::load_capability`] of `K`'s kind, then the capability as `K`'s type
    /// ([`crate::Registry::get`], layout check included).
    pub fn get_lazy<K: CapabilityKind>(&mut self, name: &str) -> Result<&K::Object, LazyError> {
        self.load_capability(K::KIND, name)?;
        Ok(self.registry().get::<K>(name)?)
    }

    /// The index cache said `path` is plugin `claimed` with some declaration, and the library
    /// loaded from it did not register what was declared: the entry is stale or forged. The
    /// cache file is removed (the next index writes it afresh), and every file `index`
    /// considered is read again and placed anew, in path order, as `index` would; what was
    /// loaded, refused or reported stays so and is not reported again.
    fn reindex_without_cache(&mut self, path: &Path, claimed: &str, kind: &str, name: &str) {
        let actual = crate::read::read_provenance(path).ok().map(|p| p.name);
        let cache = self
            .index_cache
            .as_deref()
            .map(|c| c.display().to_string())
            .unwrap_or_default();
        let lie = match actual {
            Some(actual) if actual != claimed => format!(
                "says {} is plugin `{claimed}`, but that file is plugin `{actual}`",
                path.display()
            ),
            _ => format!(
                "says plugin `{claimed}` ({}) declares {kind} `{name}`, but the library did not \
                 register it",
                path.display()
            ),
        };
        tracing::warn!(
            "the index cache {cache} {lie}: the cache is stale or forged; it is removed and \
             every plugin file is read again"
        );
        if let Some(cache) = &self.index_cache {
            let _ = std::fs::remove_file(cache);
        }
        let old = std::mem::take(&mut self.lazy);
        // Reported before (at index time, or loaded on first use since): not again.
        let settled = |file: &Path| {
            old.settled.contains(file)
                || old
                    .plugins
                    .iter()
                    .any(|p| p.path == file && p.state != IndexedState::Pending)
        };
        for file in &old.considered {
            let provenance = match crate::read::read_provenance(file) {
                Ok(p) => p,
                Err(e) => {
                    let report = PluginReport::new(file.clone());
                    self.lazy_reports
                        .push(report.with_error(Status::Rejected, e.into()));
                    continue;
                }
            };
            self.lazy.considered.push(file.clone());
            let name = provenance.name.clone();
            // As `index` does: refused or disabled by the configuration, or taking a builtin's
            // name, reported and never indexed.
            let misnamed = self.configured_name(file).is_some_and(|n| n != name);
            let builtin = self.plugins().iter().any(|p| p.builtin && *p.name == name);
            if misnamed || self.is_disabled(&name) || builtin {
                if !settled(file) {
                    let report = self.verify(file);
                    self.lazy_reports.push(report);
                }
                self.lazy.settled.insert(file.clone());
                continue;
            }
            let placed = self.lazy.add(file, &name, provenance.capabilities.as_ref());
            if placed != Placed::Indexed {
                self.lazy.settled.insert(file.clone());
            }
            match placed {
                Placed::Indexed => {
                    if let Some(before) = old.plugins.iter().find(|p| &p.path == file) {
                        let at = self.lazy.plugins.len() - 1;
                        self.lazy.plugins[at].state = before.state.clone();
                    }
                }
                _ if settled(file) => {}
                Placed::Shadowed(first) => {
                    let mut report = PluginReport::new(file.clone());
                    report.name = Some(name.clone());
                    report.version = Some(provenance.version.to_string());
                    let error = PluginError::Shadowed {
                        path: file.clone(),
                        name,
                        first,
                    };
                    self.lazy_reports
                        .push(report.with_error(Status::Shadowed, error));
                }
                Placed::Undeclared => {
                    let report = self.load(file);
                    self.lazy_reports.push(report);
                }
            }
        }
    }

    fn not_registered(&self, kind: &str, name: &str, plugin: String, path: PathBuf) -> LazyError {
        let registered = self
            .registry()
            .list()
            .into_iter()
            .filter(|c| self.registry().provider(&c.kind, &c.name) == Some(plugin.as_str()))
            .map(|c| format!("{}:{}", c.kind, c.name))
            .collect();
        LazyError::NotRegistered {
            kind: kind.to_owned(),
            name: name.to_owned(),
            plugin,
            path,
            registered,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
