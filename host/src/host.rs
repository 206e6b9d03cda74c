//! The host: verification, loading and registration of plugins, one file or whole directories.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plugin_api::provenance::{DecodeError, Provenance};

use crate::discover::{discover, DiscoverError};
use crate::error::PluginError;
use crate::load::{init_root, register, Registration};
use crate::map::{LoadFrom, Mapper, Verified};
use crate::policy::{judge_with, CheckKind, Policy, PreparedHost};
use crate::read::{open_sized, read_sized, ReadError};
use crate::reason::ReasonCode;
use crate::registry::{Kinds, Registry};
use crate::report::{PluginReport, Status};
use crate::text::printable;

/// Who the host is: the application's name and version, and its own build provenance, which
/// every plugin is judged against.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    /// Application name, told to plugins.
    pub name: String,
    /// Application version, told to plugins.
    pub version: String,
    /// The host's own provenance (from its `build.rs`, via `plugin_api::provenance_blob!()`).
    pub provenance: Provenance,
}

impl HostIdentity {
    /// Builds the identity from the application's embedded provenance blob:
    ///
    /// ```ignore
    /// let me = HostIdentity::from_blob(plugin_api::provenance_blob!())?;
    /// ```
    pub fn from_blob(blob: &[u8]) -> Result<Self, DecodeError> {
        let provenance = Provenance::decode(blob)?;
        Ok(HostIdentity {
            name: provenance.name.clone(),
            version: provenance.version.to_string(),
            provenance,
        })
    }
}

/// Whether a scan loads the plugins it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// Verify, load and register.
    Load,
    /// Verify only: nothing is loaded, no plugin code runs.
    VerifyOnly,
}

/// A plugin that was loaded and registered.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// Its name.
    pub name: Arc<str>,
    /// The file it was loaded from (resolved, absolute).
    pub path: PathBuf,
    /// Its provenance (a builtin's: the host's own).
    pub provenance: Provenance,
    /// Whether it is compiled into the host ([`Host::with_builtin`]); `path` is then
    /// [`crate::BUILTIN_PATH`].
    pub builtin: bool,
}

/// Loads verified plugins and keeps their capabilities.
///
/// Loaded libraries are never unloaded: capabilities may hold pointers into them for the
/// rest of the process.
pub struct Host {
    identity: HostIdentity,
    host_deps: PreparedHost,
    policy: Policy,
    kinds: Kinds,
    configs: HashMap<String, String>,
    registry: Registry,
    plugins: Vec<LoadedPlugin>,
    before_load: Option<BeforeLoad>,
    mapper: Mapper,
    hang_warning: Option<Duration>,
    check_layouts: bool,
    pub(crate) builtins: crate::builtin::Builtins,
    pub(crate) settings: crate::settings::Settings,
    pub(crate) trust: crate::trust::Trust,
    pub(crate) lazy: crate::lazy::Index,
    pub(crate) lazy_reports: Vec<PluginReport>,
    pub(crate) index_cache: Option<PathBuf>,
    pub(crate) isolation: crate::isolate::Settings,
}

/// See [`Host::with_before_load`].
type BeforeLoad = Box<dyn Fn(&Path) + Send + Sync>;

/// How long plugin code may run while loading or registering before the host warns.
pub const DEFAULT_HANG_WARNING: Duration = Duration::from_secs(5);

/// The outcome of the first path to a file in a scan, for the other paths to it.
pub(crate) struct Seen {
    first: PathBuf,
    status: Status,
    reason: Option<ReasonCode>,
    message: Option<String>,
}

impl Host {
    /// A host with the `default` policy and the demo capability kinds.
    pub fn new(identity: HostIdentity) -> Self {
        Host {
            host_deps: PreparedHost::new(&identity.provenance),
            identity,
            policy: Policy::default(),
            kinds: Kinds::demo(),
            configs: HashMap::new(),
            registry: Registry::default(),
            plugins: Vec::new(),
            before_load: None,
            mapper: Mapper::default(),
            hang_warning: Some(DEFAULT_HANG_WARNING),
            check_layouts: false,
            builtins: Default::default(),
            settings: Default::default(),
            trust: Default::default(),
            lazy: Default::default(),
            lazy_reports: Vec::new(),
            index_cache: None,
            isolation: Default::default(),
        }
    }

    /// Sets what the dynamic loader maps: a sealed private copy (the default) or the
    /// plugin file itself (see [`LoadFrom`] for what that risks).
    pub fn with_load_from(mut self, load_from: LoadFrom) -> Self {
        self.mapper.load_from = load_from;
        self
    }

    /// Sets how long a plugin's constructors or `register` may run before the host logs a
    /// warning naming it ([`DEFAULT_HANG_WARNING`]; `None`: never warn).
    pub fn with_hang_warning(mut self, after: Option<Duration>) -> Self {
        self.hang_warning = after;
        self
    }

    /// Checks the layout of every capability when it is registered, not on first use: a
    /// plugin with a capability the host could never use then ends `failed`
    /// (`layout-mismatch`) instead of `loaded`. Costs `abi_stable`'s layout check per
    /// capability at load time.
    pub fn with_layout_check_at_load(mut self, eager: bool) -> Self {
        self.check_layouts = eager;
        self
    }

    /// Calls `hook` with the path of each file that passed verification, just before it is
    /// loaded (for instrumentation, and for tests that swap files at that moment).
    pub fn with_before_load(mut self, hook: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        self.before_load = Some(Box::new(hook));
        self
    }

    /// Runs the [`Host::with_before_load`] hook, if one is set.
    pub(crate) fn run_before_load(&self, path: &Path) {
        if let Some(hook) = &self.before_load {
            hook(path);
        }
    }

    /// Sets the policy plugins are judged under.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the capability kinds this host accepts.
    pub fn with_kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// Sets the configuration string handed to the plugin named `plugin`.
    pub fn with_config(mut self, plugin: impl Into<String>, config: impl Into<String>) -> Self {
        self.configs.insert(plugin.into(), config.into());
        self
    }

    /// The host's identity.
    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    /// The capability kinds this host accepts.
    pub(crate) fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// The configuration string of the plugin named `name` (empty when none was set).
    pub(crate) fn config_for(&self, name: &str) -> &str {
        self.configs.get(name).map_or("", String::as_str)
    }

    /// How long plugin code may run before the host warns.
    pub(crate) fn hang_warning(&self) -> Option<Duration> {
        self.hang_warning
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The capabilities of all loaded plugins.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The plugins loaded so far.
    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// Judges one file without loading it.
    pub fn verify(&self, path: &Path) -> PluginReport {
        self.verify_inner(path, &HashMap::new(), None, None).0
    }

    /// Verifies, loads and registers one file.
    pub fn load(&mut self, path: &Path) -> PluginReport {
        let (report, verified) = self.verify_inner(path, &HashMap::new(), None, None);
        match verified {
            Some(verified) => self.load_verified(report, verified),
            None => report,
        }
    }

    /// Discovers the plugin files in `dirs` and verifies (and, in [`ScanMode::Load`], loads)
    /// each, in order. One bad file never stops the others.
    pub fn scan(
        &mut self,
        dirs: &[impl AsRef<Path>],
        mode: ScanMode,
    ) -> Result<Vec<PluginReport>, DiscoverError> {
        let mut reports = Vec::new();
        self.scan_each(dirs, mode, |report| reports.push(report))?;
        Ok(reports)
    }

    /// [`Host::scan`], handing each report to `each` as soon as that file is done (so a
    /// caller can show progress, and what it showed survives a plugin that crashes the
    /// process).
    ///
    /// Each file (inode) is judged once per scan: another link to it gets the first
    /// outcome, as [`PluginError::SameFile`].
    pub fn scan_each(
        &mut self,
        dirs: &[impl AsRef<Path>],
        mode: ScanMode,
        mut each: impl FnMut(PluginReport),
    ) -> Result<(), DiscoverError> {
        let mut verified_names = HashMap::new();
        let mut seen: HashMap<(u64, u64), Seen> = HashMap::new();
        let paths = self.candidates(discover(dirs)?);
        for report in self.register_builtins(&paths) {
            each(report);
        }
        for path in paths {
            let (report, verified) = self.verify_inner(&path, &verified_names, Some(&seen), None);
            let id = verified
                .as_ref()
                .and_then(|v| file_id(&v.meta))
                .or(report.file_id);
            let report = match (verified, mode) {
                (Some(verified), ScanMode::Load) => self.load_verified(report, verified),
                (Some(verified), ScanMode::VerifyOnly) => {
                    verified_names.insert(verified.provenance.name, report.path.clone());
                    report
                }
                (None, _) => report,
            };
            if let Some(id) = id {
                seen.entry(id).or_insert_with(|| Seen {
                    first: report.path.clone(),
                    status: report.status,
                    reason: report.reason,
                    message: report.message.clone(),
                });
            }
            each(report);
        }
        Ok(())
    }

    /// Opens, reads, runs the trust step on and judges one file. `reloading`: the name of a
    /// loaded plugin whose file this is being verified again ([`Host::reload`]), which then
    /// does not count as already loaded.
    pub(crate) fn verify_inner(
        &self,
        path: &Path,
        verified_names: &HashMap<String, PathBuf>,
        seen: Option<&HashMap<(u64, u64), Seen>>,
        reloading: Option<&str>,
    ) -> (PluginReport, Option<Verified>) {
        let mut report = PluginReport::new(path.to_owned());
        let (file, meta) = match open_sized(path) {
            Ok(opened) => opened,
            Err(ReadError::Io { path, source })
                if crate::error::out_of_descriptors(&source).is_some() =>
            {
                let detail = crate::error::out_of_descriptors(&source).unwrap_or_default();
                let error = PluginError::Resources { path, detail };
                return (report.with_error(Status::Rejected, error), None);
            }
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };
        report.file_id = file_id(&meta);
        if let Some(first) = report.file_id.and_then(|id| seen?.get(&id)) {
            // Nothing of this path is loaded: the first outcome stands for both.
            let reason = first.reason.unwrap_or(ReasonCode::DuplicatePlugin);
            let message = match &first.message {
                Some(message) => message.clone(),
                None => "that file is already loaded or verified; remove one of the two paths"
                    .to_owned(),
            };
            let error = PluginError::SameFile {
                path: path.to_owned(),
                first: first.first.clone(),
                reason,
                message,
            };
            // A path to a plugin in use (or shadowed) is shadowed by the first path to it.
            let status = match first.status {
                Status::Rejected | Status::Failed => Status::Rejected,
                _ => Status::Shadowed,
            };
            return (report.with_error(status, error), None);
        }
        let len = meta.len();
        let provenance = match read_sized(path, &file, len) {
            Ok(p) => p,
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };

        report.name = Some(provenance.name.clone());
        report.version = Some(provenance.version.to_string());
        if let Some(expected) = self.configured_name(path) {
            if expected != provenance.name {
                let error = PluginError::NameMismatch {
                    path: path.to_owned(),
                    expected: expected.to_owned(),
                    found: provenance.name.clone(),
                };
                return (report.with_error(Status::Rejected, error), None);
            }
        }
        if self.is_disabled(&provenance.name) {
            report.status = Status::Disabled;
            report.message = Some(format!(
                "plugin `{}` is disabled in the configuration (`enabled = false`)",
                provenance.name
            ));
            return (report, None);
        }
        let bound = self.configured_name(path) == Some(provenance.name.as_str());
        let trusted = self.trust.step(
            self.mapper.load_from,
            bound,
            path,
            &file,
            &meta,
            &provenance,
            &mut report,
        );
        let sealed = match trusted {
            Ok(sealed) => sealed,
            Err(e) => return (report.with_error(Status::Rejected, e), None),
        };
        let policy = self.policy_for(&provenance.name);
        let mut verdict = judge_with(
            &self.identity.provenance,
            &self.host_deps,
            &provenance,
            policy,
        );
        // Refused for a toolchain difference: a registered worker built with the plugin's
        // toolchain runs it instead, judged against that worker's provenance.
        if let Some(refused) = verdict.failure().map(|c| c.check) {
            if let Some((choice, against_worker)) = self.pick_worker(&provenance, policy, refused) {
                verdict = against_worker;
                report.worker = Some(choice);
            }
        }
        let failure = verdict.failure().map(|c| {
            let mut message = c.message.clone();
            if matches!(c.check, CheckKind::Rustc | CheckKind::Dependencies) {
                message.push_str(&self.worker_hint(&provenance, policy));
            }
            (c.check.reason(), message)
        });
        report.checks = verdict.checks;
        let differences = verdict
            .differences
            .iter()
            .map(|d| {
                if d.content_only {
                    format!("{} {}, not the host's copy ({})", d.name, d.plugin, d.host)
                } else {
                    format!("{} {} (host: {})", d.name, d.plugin, d.host)
                }
            })
            .collect();
        if let Some((reason, message)) = failure {
            let error = PluginError::Rejected {
                path: path.to_owned(),
                reason,
                message,
            };
            return (report.with_error(Status::Rejected, error), None);
        }
        let first = self
            .plugins
            .iter()
            .find(|p| *p.name == provenance.name && reloading != Some(&*p.name))
            .map(|p| (p.path.clone(), p.builtin))
            .or_else(|| Some((verified_names.get(&provenance.name)?.clone(), false)));
        if let Some((first, builtin)) = first {
            let (path, name) = (path.to_owned(), provenance.name.clone());
            // A builtin's name taken by a file is a conflict to resolve; a file that repeats
            // a plugin found earlier in the search path is shadowed by it.
            let (status, error) = if builtin {
                (
                    Status::Rejected,
                    PluginError::DuplicateBuiltin { path, name },
                )
            } else {
                (
                    Status::Shadowed,
                    PluginError::Shadowed { path, name, first },
                )
            };
            return (report.with_error(status, error), None);
        }
        report.status = Status::Verified;
        (
            report,
            Some(Verified {
                file,
                meta,
                provenance,
                differences,
                sealed,
            }),
        )
    }

    fn load_verified(&mut self, report: PluginReport, verified: Verified) -> PluginReport {
        let path = report.path.clone();
        let name = verified.provenance.name.clone();
        self.run_before_load(&path);
        let resolved = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if self.isolation.isolates(&name) || report.worker.is_some() {
            return self.load_isolated(report, verified, resolved);
        }
        tracing::debug!("loading {}", printable(&path.display().to_string()));
        let watch = crate::watch::enter(
            format!("loading plugin `{name}` from {}", path.display()),
            self.hang_warning,
        );
        let header = match self.mapper.map(&verified, &path, &resolved) {
            Ok(header) => header,
            Err(e) => return report.with_error(Status::Failed, e),
        };
        let root = match init_root(header, &path, &verified.differences) {
            Ok(root) => root,
            Err(e) => return report.with_error(Status::Failed, e),
        };
        let entry = Entry {
            path,
            resolved,
            name,
            register: root.register(),
            differences: verified.differences,
            provenance: verified.provenance,
            builtin: false,
        };
        self.register_entry(report, entry, watch)
    }

    /// Runs a plugin's `register` (loaded or builtin) and, when all went well, commits its
    /// capabilities: configuration, kinds, validation and conflicts are the same for both.
    pub(crate) fn register_entry(
        &mut self,
        report: PluginReport,
        entry: Entry,
        watch: crate::watch::Watch,
    ) -> PluginReport {
        let Entry {
            path,
            resolved,
            name,
            register: register_fn,
            differences,
            provenance,
            builtin,
        } = entry;
        tracing::debug!("registering {name}");
        watch.step(format!("registering plugin `{name}` ({})", path.display()));
        let mut registration = Registration {
            host_name: &self.identity.name,
            host_version: &self.identity.version,
            config: self.config_for(&name),
            kinds: &self.kinds,
            staged: Vec::new(),
            self_conflict: None,
            invalid: None,
            foreign: None,
        };
        let registered = register(register_fn, &path, &name, &mut registration);
        drop(watch);
        if let Some(detail) = registration.invalid.take() {
            let error = PluginError::InvalidCapability { path, name, detail };
            return report.with_error(Status::Failed, error);
        }
        if let Err(e) = registered {
            // A plugin that gives up because the host lacks a kind it needs was most likely
            // written for another application: say that, not "fix its configuration".
            let e = match (e, registration.foreign.take()) {
                (PluginError::RegisterFailed { path, name, .. }, Some(detail)) => {
                    PluginError::ForeignKind { path, name, detail }
                }
                (e, _) => e,
            };
            return report.with_error(Status::Failed, e);
        }
        if let Some((kind, capability)) = registration.self_conflict.take() {
            let error = PluginError::CapabilityTwice {
                path,
                name,
                kind,
                capability,
            };
            return report.with_error(Status::Failed, error);
        }
        let undeclared = registration
            .staged
            .iter()
            .find(|c| provenance.declares(c.kind(), c.name()) == Some(false));
        if let Some(c) = undeclared {
            let error = PluginError::UndeclaredCapability {
                path,
                name,
                kind: c.kind().to_owned(),
                capability: c.name().to_owned(),
            };
            return report.with_error(Status::Failed, error);
        }
        let staged = std::mem::take(&mut registration.staged);
        let plugin = Committed {
            resolved,
            provenance,
            differences,
            builtin,
        };
        self.commit_plugin(report, plugin, staged, None)
    }

    /// Commits a registered plugin's capabilities (its own, or an isolated plugin's proxies
    /// with their `supervisor`) and records the plugin: refused when another plugin holds
    /// one of the names, or (its own) when one does not have the layout of its kind's type.
    pub(crate) fn commit_plugin(
        &mut self,
        mut report: PluginReport,
        plugin: Committed,
        staged: Vec<plugin_api::CapabilityExport>,
        supervisor: Option<Arc<crate::isolate::Supervisor>>,
    ) -> PluginReport {
        let Committed {
            resolved,
            provenance,
            differences,
            builtin,
        } = plugin;
        if let Some((kind, capability, holder)) = self.registry.conflict(&staged) {
            let error = PluginError::CapabilityConflict {
                path: report.path.clone(),
                name: provenance.name.clone(),
                kind,
                capability,
                holder,
            };
            return report.with_error(Status::Failed, error);
        }
        // An isolated plugin's proxies are the host's own objects: only a plugin's own
        // capabilities can have another layout.
        if self.check_layouts && supervisor.is_none() {
            if let Err((kind, capability, detail)) = self.kinds.check_layouts(&staged) {
                let error = PluginError::Load {
                    path: report.path.clone(),
                    reason: ReasonCode::LayoutMismatch,
                    detail: format!(
                        "its {kind} `{capability}` does not have the layout this host \
                         expects, so it could never be used: {detail}; {}",
                        crate::registry::layout_fix(&differences)
                    ),
                };
                return report.with_error(Status::Failed, error);
            }
        }
        let plugin: Arc<str> = provenance.name.as_str().into();
        let mut capabilities: Vec<_> = staged
            .iter()
            .map(|c| crate::registry::CapabilityInfo {
                kind: c.kind().to_owned(),
                name: c.name().to_owned(),
            })
            .collect();
        capabilities.sort();
        let differences: Arc<[String]> = differences.into();
        self.registry
            .commit(&plugin, &differences, &self.kinds, staged);
        if let Some(supervisor) = supervisor {
            self.registry.supervise(plugin.clone(), supervisor);
        }
        self.plugins.push(LoadedPlugin {
            name: plugin,
            path: resolved,
            provenance,
            builtin,
        });
        report.capabilities = capabilities;
        report.status = if builtin {
            Status::Builtin
        } else {
            Status::Loaded
        };
        report
    }
}

/// What is recorded of a plugin whose capabilities are committed ([`Host::commit_plugin`]).
pub(crate) struct Committed {
    /// The path recorded in [`LoadedPlugin::path`].
    pub resolved: PathBuf,
    pub provenance: Provenance,
    /// Crates shared with the host at other versions or contents.
    pub differences: Vec<String>,
    pub builtin: bool,
}

/// A plugin about to register: its entry point and where it came from.
pub(crate) struct Entry {
    /// The path reported (a builtin's: [`crate::BUILTIN_PATH`]).
    pub path: PathBuf,
    /// The path recorded in [`LoadedPlugin::path`].
    pub resolved: PathBuf,
    pub name: String,
    pub register: plugin_api::RegisterFn,
    /// Crates shared with the host at other versions or contents.
    pub differences: Vec<String>,
    pub provenance: Provenance,
    pub builtin: bool,
}

/// The identity of a file: device and inode.
fn file_id(meta: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}
