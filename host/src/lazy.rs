//! Lazy loading: a capability index built from provenance alone, and libraries loaded only
//! when one of their capabilities is first used.
//!
//! [`crate::Host::index`] discovers the plugin files of the search path and reads each one's
//! provenance (no trust step, no judging, nothing loaded). A plugin that declares its
//! capabilities (`[package.metadata.plugin-host] capabilities = { command = ["hello"] }` in
//! its `Cargo.toml`, recorded by `plugin_api::build::record`) is indexed under each of them.
//! [`crate::Host::get_lazy`] (or [`crate::Host::load_capability`]) then finds the plugin that declared the
//! capability asked for and takes it through the normal path — open, read, trust, judge, load,
//! register — exactly as [`crate::Host::load`] does: the index only chooses which file to verify.
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

mod cache;

use crate::discover::{discover, DiscoverError};
use crate::error::PluginError;
use crate::reason::ReasonCode;
use crate::registry::{LookupError, Registry};
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
    /// Every file `index` considered, in path order: what `Lazy::reindex_without_cache`
    /// reads and places again.
    considered: Vec<PathBuf>,
    /// The files `index` already reported (loaded at once, verified and refused, shadowed):
    /// not reported again.
    settled: std::collections::HashSet<PathBuf>,
    /// The files whose name and declaration came from the index cache, not from the file.
    /// (By position in `plugins`: hashing a path costs more than the rest of indexing it.)
    cached: std::collections::HashSet<usize>,
    /// Of those, the ones trusted by their directory's identity, with the identity each had
    /// when its entry was made: checked one by one before a capability is said not found.
    unchecked: Vec<(PathBuf, cache::Id)>,
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
    /// The indexed plugins, in path order.
    pub(crate) fn plugins(&self) -> &[IndexedPlugin] {
        &self.plugins
    }

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

/// Why [`crate::Host::load_capability`] could not make a capability available.
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

/// What lazy loading needs of the host: its loading, and what its settings say of a file.
pub(crate) trait Loader {
    /// The configured files, then the `found` ones.
    fn candidates(&self, found: Vec<PathBuf>) -> Vec<PathBuf>;
    /// Registers the pending builtins, but those a file among `candidates` replaces.
    fn register_builtins(&mut self, candidates: &[PathBuf]) -> Vec<PluginReport>;
    /// Verifies, loads and registers one file.
    fn load(&mut self, path: &Path) -> PluginReport;
    /// Judges one file without loading it.
    fn verify(&self, path: &Path) -> PluginReport;
    /// Whether the settings refuse the file at `path`, carrying plugin `name` (configured for
    /// another name, or disabled).
    fn refused_by_settings(&self, path: &Path, name: &str) -> bool;
    /// Whether a builtin holds the name `name`.
    fn is_builtin(&self, name: &str) -> bool;
    /// The capabilities registered so far.
    fn registry(&self) -> &Registry;
}

/// Lazy loading's state in a host: the index, the reports of what it loaded, and where its
/// cache lives.
#[derive(Debug, Default)]
pub(crate) struct Lazy {
    pub(crate) index: Index,
    pub(crate) reports: Vec<PluginReport>,
    pub(crate) cache: Option<PathBuf>,
}

impl Lazy {
    /// Builds the capability index of `dirs` (in order) from provenance alone, registering
    /// the builtins first and loading at once the plugins that declare no capabilities (see
    /// the [module documentation](crate::lazy)). Returns the reports of what was decided now:
    /// builtins, files refused for unreadable provenance, shadowed files, files that take a
    /// builtin's name, and the plugins loaded up front. The indexed plugins are not reported
    /// until they are loaded ([`crate::Host::lazy_reports`]); [`crate::Host::indexed`] lists them.
    ///
    /// Calling it again adds more directories after those already indexed.
    pub(crate) fn index(
        &mut self,
        host: &mut dyn Loader,
        dirs: &[impl AsRef<Path>],
    ) -> Result<Vec<PluginReport>, DiscoverError> {
        let mut cache = self.cache.clone().map(cache::Cache::load);
        // A directory the cache knows unchanged is not listed (see `cache`).
        let mut found = Vec::new();
        for dir in dirs {
            let dir = dir.as_ref();
            match cache.as_mut().and_then(|c| c.listing(dir)) {
                Some(files) => found.extend(files),
                None => found.extend(discover(&[dir])?),
            }
        }
        let paths = host.candidates(found);
        let mut reports = host.register_builtins(&paths);
        for path in paths {
            let read;
            let mut from_cache = false;
            let (name, version, declared) = match cache.as_mut().and_then(|c| c.get(&path)) {
                Some(found) => {
                    let e = found.entry;
                    if !found.checked {
                        self.index.unchecked.push((path.clone(), e.id));
                    }
                    from_cache = true;
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
                        if let Some(cache) = &mut cache {
                            cache.unreadable(&path);
                        }
                        let report = PluginReport::new(path);
                        reports.push(report.with_error(Status::Rejected, e.into()));
                        continue;
                    }
                },
            };
            let name = name.to_owned();
            self.index.considered.push(path.clone());
            if host.refused_by_settings(&path, &name) {
                // Refused or disabled by the configuration: reported as a scan would, and
                // never indexed.
                reports.push(host.verify(&path));
                self.index.settled.insert(path);
                continue;
            }
            if host.is_builtin(&name) {
                // Not replaceable (a replaced builtin was never registered): a conflict,
                // judged as a scan would.
                reports.push(host.verify(&path));
                self.index.settled.insert(path);
                continue;
            }
            let placed = self.index.add(&path, &name, declared);
            if placed != Placed::Indexed {
                self.index.settled.insert(path.clone());
            }
            match placed {
                Placed::Indexed => {
                    if from_cache {
                        self.index.cached.insert(self.index.plugins.len() - 1);
                    }
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
                    reports.push(host.load(&path));
                }
            }
        }
        if let Some(cache) = cache {
            cache.save();
        }
        Ok(reports)
    }

    /// Makes capability `name` of kind `kind` available in the [`Host::registry`]: at once if
    /// it is there, else by verifying, loading and registering the indexed plugin that
    /// declares it (the next one in path order if that one is refused or does not register
    /// it). No other library is opened, but for earlier plugins declaring one of the same
    /// capabilities (see the module documentation).
    pub(crate) fn load_capability(
        &mut self,
        host: &mut dyn Loader,
        kind: &str,
        name: &str,
    ) -> Result<(), LazyError> {
        if host.registry().provider(kind, name).is_some() {
            return Ok(());
        }
        // The first failure in path order, should no other plugin provide it.
        let mut failure = None;
        for at in self.index.candidates(kind, name) {
            let state = match &self.index.plugins[at].state {
                IndexedState::Pending => self.load_indexed(host, at),
                done => done.clone(),
            };
            if state == IndexedState::Loaded && host.registry().provider(kind, name).is_some() {
                return Ok(());
            }
            let plugin = &self.index.plugins[at];
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
                _ if self.index.cached.contains(&at) => {
                    self.reindex_without_cache(host, &path, &plugin_name, kind, name);
                    return self.load_capability(host, kind, name);
                }
                // Loaded without it: the declaration lied.
                _ => not_registered(host.registry(), kind, name, plugin_name, path),
            };
            failure.get_or_insert(error);
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // Not declared by any file as the index knows them. Entries trusted by their
        // directory's identity miss a file overwritten in place (same inode, its directory
        // untouched): check those files one by one before saying so.
        let unchecked = std::mem::take(&mut self.index.unchecked);
        if let Some((changed, _)) = unchecked
            .iter()
            .find(|(path, id)| cache::identity(path).map(|(now, _)| now) != Some(*id))
        {
            let cache = self.cache_shown();
            tracing::debug!(
                "the index cache {cache} has an entry for {}, which changed since: the \
                 cache is removed and every plugin file is read again",
                changed.display()
            );
            if let Some(cache) = &self.cache {
                let _ = std::fs::remove_file(cache);
            }
            self.read_again(host);
            return self.load_capability(host, kind, name);
        }
        let mut available = host.registry().names(kind);
        available.extend(self.index.names(kind));
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
    fn load_indexed(&mut self, host: &mut dyn Loader, at: usize) -> IndexedState {
        let mut earlier: Vec<usize> = self.index.plugins[at]
            .capabilities
            .iter()
            .flat_map(|(kind, names)| names.iter().map(move |n| (kind, n)))
            .flat_map(|(kind, name)| self.index.candidates(kind, name))
            .filter(|&j| j < at)
            .collect();
        earlier.sort_unstable();
        earlier.dedup();
        for j in earlier {
            if self.index.plugins[j].state == IndexedState::Pending {
                self.load_indexed(host, j);
            }
        }
        let path = self.index.plugins[at].path.clone();
        let report = host.load(&path);
        let state = match (&report.reason, &report.message) {
            (Some(reason), Some(message)) => IndexedState::Refused(*reason, message.clone()),
            _ => IndexedState::Loaded,
        };
        self.index.plugins[at].state = state.clone();
        self.reports.push(report);
        state
    }

    /// The index cache said `path` is plugin `claimed` with some declaration, and the library
    /// loaded from it did not register what was declared: the entry is stale or forged. The
    /// cache file is removed (the next index writes it afresh), and every file `index`
    /// considered is read again and placed anew, in path order, as `index` would; what was
    /// loaded, refused or reported stays so and is not reported again.
    fn reindex_without_cache(
        &mut self,
        host: &mut dyn Loader,
        path: &Path,
        claimed: &str,
        kind: &str,
        name: &str,
    ) {
        let actual = crate::read::read_provenance(path).ok().map(|p| p.name);
        let cache = self.cache_shown();
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
        if let Some(cache) = &self.cache {
            let _ = std::fs::remove_file(cache);
        }
        self.read_again(host);
    }

    /// The index cache's path, as messages show it.
    fn cache_shown(&self) -> String {
        self.cache
            .as_deref()
            .map(|c| c.display().to_string())
            .unwrap_or_default()
    }

    /// Reads every file `index` considered again and places it anew, in path order, as
    /// `index` would; what was loaded, refused or reported stays so and is not reported again.
    fn read_again(&mut self, host: &mut dyn Loader) {
        let old = std::mem::take(&mut self.index);
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
                    self.reports
                        .push(report.with_error(Status::Rejected, e.into()));
                    continue;
                }
            };
            self.index.considered.push(file.clone());
            let name = provenance.name.clone();
            // As `index` does: refused or disabled by the configuration, or taking a builtin's
            // name, reported and never indexed.
            if host.refused_by_settings(file, &name) || host.is_builtin(&name) {
                if !settled(file) {
                    let report = host.verify(file);
                    self.reports.push(report);
                }
                self.index.settled.insert(file.clone());
                continue;
            }
            let placed = self
                .index
                .add(file, &name, provenance.capabilities.as_ref());
            if placed != Placed::Indexed {
                self.index.settled.insert(file.clone());
            }
            match placed {
                Placed::Indexed => {
                    if let Some(before) = old.plugins.iter().find(|p| &p.path == file) {
                        let at = self.index.plugins.len() - 1;
                        self.index.plugins[at].state = before.state.clone();
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
                    self.reports
                        .push(report.with_error(Status::Shadowed, error));
                }
                Placed::Undeclared => {
                    let report = host.load(file);
                    self.reports.push(report);
                }
            }
        }
    }
}

fn not_registered(
    registry: &Registry,
    kind: &str,
    name: &str,
    plugin: String,
    path: PathBuf,
) -> LazyError {
    let registered = registry
        .list()
        .into_iter()
        .filter(|c| registry.provider(&c.kind, &c.name) == Some(plugin.as_str()))
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

#[cfg(test)]
pub(crate) mod tests;
