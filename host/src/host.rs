//! The host: an orchestrator of parts. A file goes discover → [`Gate`] (read, trust, judge)
//! → placement ([`InProcess`], a builtin, or the application's [`Placement`]) → registry,
//! and the host keeps one record per plugin ([`LoadedPlugin`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plugin_api::{Builtin, CapabilityExport, CapabilityKind};

use crate::builtin::{Builtins, BUILTIN_PATH};
use crate::discover::{discover, DiscoverError};
use crate::error::PluginError;
use crate::gate::{file_id, Context, Gate, Seen};
use crate::identity::HostIdentity;
use crate::kinds::Kinds;
use crate::lazy::{IndexedPlugin, Lazy, LazyError, Loader};
use crate::load::{registered, Registering};
use crate::place::{InProcess, Placement, Request, Verified};
use crate::policy::Policy;
use crate::reason::ReasonCode;
use crate::record::{LoadedPlugin, ReloadError};
use crate::registry::{CapabilityInfo, Registry};
use crate::report::{PluginReport, Status};
use crate::trust::{Lock, SignatureMode};

/// Whether a scan loads the plugins it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// Verify, load and register.
    Load,
    /// Verify only: nothing is loaded, no plugin code runs.
    VerifyOnly,
}

/// See [`crate::HostBuilder::before_load`].
pub(crate) type BeforeLoad = Box<dyn Fn(&Path) + Send + Sync>;

/// The parts a [`HostBuilder`] builds a host from.
pub(crate) struct Parts {
    pub gate: Gate,
    pub kinds: Kinds,
    pub in_process: InProcess,
    pub placement: Option<Arc<dyn Placement>>,
    pub before_load: Option<BeforeLoad>,
    pub builtins: Builtins,
    pub index_cache: Option<PathBuf>,
}

/// Loads verified plugins and keeps their capabilities.
///
/// Loaded libraries are never unloaded: capabilities may hold pointers into them for the
/// rest of the process.
pub struct Host {
    /// Whether a file may run: identity, policy, per-plugin settings, trust.
    gate: Gate,
    kinds: Kinds,
    /// Where plugins run: in-process, or the application's placement for those it takes.
    in_process: InProcess,
    placement: Option<Arc<dyn Placement>>,
    before_load: Option<BeforeLoad>,
    builtins: Builtins,
    /// Builtins that failed to register (their error, or a conflict): their names stay
    /// theirs, as a registered builtin's are, so that no file takes one without leave.
    failed_builtins: Vec<(String, PathBuf)>,
    /// What runs: the capabilities, and one record per plugin.
    registry: Registry,
    plugins: Vec<LoadedPlugin>,
    lazy: Lazy,
}

impl Host {
    pub(crate) fn from_parts(parts: Parts) -> Self {
        Host {
            gate: parts.gate,
            kinds: parts.kinds,
            in_process: parts.in_process,
            placement: parts.placement,
            before_load: parts.before_load,
            builtins: parts.builtins,
            failed_builtins: Vec::new(),
            registry: Registry::default(),
            plugins: Vec::new(),
            lazy: Lazy {
                cache: parts.index_cache,
                ..Lazy::default()
            },
        }
    }

    /// The host's identity.
    pub fn identity(&self) -> &HostIdentity {
        &self.gate.identity
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.gate.policy
    }

    /// The capability kinds this host accepts.
    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// The capabilities of all loaded plugins.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The plugins loaded so far.
    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// The placement out of process, if the application gave one.
    pub fn placement(&self) -> Option<&dyn Placement> {
        self.placement.as_deref()
    }

    /// The lock in force, and whether unlisted plugins are refused.
    pub fn lock(&self) -> Option<(&Lock, bool)> {
        let (lock, locked) = self.gate.trust.lock.as_ref()?;
        Some((lock, *locked))
    }

    /// The signature mode that applies to a file of the plugin named `plugin` that is bound
    /// to that name (its configured path). Any other file claiming the name gets the host's
    /// mode when the plugin's own is looser (see [`crate::PluginSettings::signatures`]).
    pub fn signature_mode(&self, plugin: &str) -> SignatureMode {
        self.gate.trust.mode_for(plugin, true).0
    }

    /// Judges one file without loading it.
    pub fn verify(&self, path: &Path) -> PluginReport {
        self.verify_with(path, &HashMap::new(), None, None, false).0
    }

    /// Verifies, loads and registers one file.
    pub fn load(&mut self, path: &Path) -> PluginReport {
        match self.verify_with(path, &HashMap::new(), None, None, true) {
            (report, Some(verified)) => self.place(report, verified),
            (report, None) => report,
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
        let paths = self.gate.candidates(discover(dirs)?);
        for report in self.register_builtins(&paths) {
            each(report);
        }
        // While one file loads, the next one's sealed copy is made on another thread.
        let place = mode == ScanMode::Load;
        let ahead = self.in_process.copy_ahead(&paths, place);
        for (index, path) in paths.into_iter().enumerate() {
            ahead.reached(index);
            let (report, verified) =
                self.verify_with(&path, &verified_names, Some(&seen), None, place);
            let id = verified
                .as_ref()
                .and_then(|v| file_id(&v.file, &v.meta))
                .or(report.file_id);
            let report = match verified {
                Some(mut verified) => {
                    ahead.attach(index, &path, &mut verified);
                    self.place(report, verified)
                }
                None => {
                    if let (Status::Verified, Some(name)) = (report.status, &report.name) {
                        // Verify only: admitted, and its name now taken.
                        verified_names.insert(name.clone(), report.path.clone());
                    }
                    report
                }
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

    /// The gate's verdict on one file, in this host's context: `verified_names` are the
    /// plugins a verify-only scan admitted so far; `reloading` the name of a loaded plugin
    /// whose file this is being verified again ([`Host::reload`]), which then does not count
    /// as already loaded.
    fn verify_with(
        &self,
        path: &Path,
        verified_names: &HashMap<String, PathBuf>,
        seen: Option<&HashMap<(u64, u64), Seen>>,
        reloading: Option<&str>,
        place: bool,
    ) -> (PluginReport, Option<Verified>) {
        let taken = |name: &str| {
            self.plugins
                .iter()
                .find(|p| *p.name == *name && reloading != Some(&*p.name))
                .map(|p| (p.path.clone(), p.builtin))
                .or_else(|| {
                    let (_, path) = self.failed_builtins.iter().find(|(n, _)| n == name)?;
                    Some((path.clone(), true))
                })
                .or_else(|| Some((verified_names.get(name)?.clone(), false)))
        };
        let cx = Context {
            load_from: self.in_process.load_from(),
            placement: self.placement.as_deref(),
            taken: &taken,
            seen,
            place,
        };
        self.gate.verify(path, &cx)
    }

    /// What a placement is told about the verified plugin `name` at `path`.
    fn request<'a>(
        &'a self,
        name: &'a str,
        path: &'a Path,
        resolved: &'a Path,
        report: &'a PluginReport,
    ) -> Request<'a> {
        Request {
            name,
            path,
            resolved,
            host: &self.gate.identity,
            policy: self.gate.policy_for(name),
            config: self.gate.config_for(name),
            kinds: &self.kinds,
            worker: report.worker.as_ref(),
        }
    }

    /// Places a verified plugin (in-process, or out of process when the placement takes it
    /// or rescued it) and commits what it registered.
    fn place(&mut self, mut report: PluginReport, verified: Verified) -> PluginReport {
        let path = report.path.clone();
        let name = verified.provenance.name.clone();
        if let Some(hook) = &self.before_load {
            hook(&path);
        }
        let resolved = resolved_path(&verified.file, &path);
        let out = self
            .placement
            .clone()
            .filter(|p| report.worker.is_some() || p.takes(&name));
        // The record kept is the one verified: shared while placing, then taken back whole
        // (copied only if a placement still holds it).
        let provenance = Arc::clone(&verified.provenance);
        let differences = verified.differences.clone();
        // Set before placing: a plugin that fails in its worker was isolated all the same.
        report.isolated = out.is_some();
        let request = self.request(&name, &path, &resolved, &report);
        let placed = match &out {
            Some(placement) => placement.place(&request, verified),
            None => self.in_process.place(&request, verified),
        };
        let placed = match placed {
            Ok(placed) => placed,
            Err(refusal) => return report.with_error(refusal.status, *refusal.error),
        };
        let provenance = Arc::try_unwrap(provenance).unwrap_or_else(|kept| (*kept).clone());
        let record = LoadedPlugin {
            name: name.as_str().into(),
            path: resolved,
            provenance,
            builtin: false,
            source: path,
            running: placed.running,
        };
        self.commit(report, record, differences, placed.exports)
    }

    /// Commits a placed plugin's capabilities and keeps its record: refused when another
    /// plugin holds one of the names.
    fn commit(
        &mut self,
        mut report: PluginReport,
        record: LoadedPlugin,
        differences: Vec<String>,
        exports: Vec<CapabilityExport>,
    ) -> PluginReport {
        if let Some((kind, capability, holder)) = self.registry.conflict(&exports) {
            let error = PluginError::CapabilityConflict {
                path: report.path.clone(),
                name: record.name.to_string(),
                kind,
                capability,
                holder,
            };
            return report.with_error(Status::Failed, error);
        }
        let mut capabilities: Vec<_> = exports
            .iter()
            .map(|c| CapabilityInfo {
                kind: c.kind().to_owned(),
                name: c.name().to_owned(),
            })
            .collect();
        capabilities.sort();
        let differences: Arc<[String]> = differences.into();
        let retired: Option<crate::registry::Retired> = record.running.clone().map(|r| {
            let retired: crate::registry::Retired = Arc::new(move || r.retired());
            retired
        });
        let exports = self.kinds.infos(exports);
        self.registry
            .commit(&record.name, &differences, exports, retired.as_ref());
        report.capabilities = capabilities;
        report.status = if record.builtin {
            Status::Builtin
        } else {
            Status::Loaded
        };
        self.plugins.push(record);
        report
    }

    /// Registers a builtin now (no replacement applies): [`Status::Builtin`], or `failed`
    /// with the reason a loaded plugin would get.
    pub fn add_builtin(&mut self, builtin: Builtin) -> PluginReport {
        let report = self.add_builtin_once(builtin);
        // One that failed keeps its name all the same (see `failed_builtins`).
        if report.status == Status::Failed {
            if let Some(name) = &report.name {
                self.failed_builtins
                    .push((name.clone(), report.path.clone()));
            }
        }
        report
    }

    fn add_builtin_once(&mut self, builtin: Builtin) -> PluginReport {
        let name = builtin.name.as_str().to_owned();
        let path = PathBuf::from(BUILTIN_PATH);
        let mut report = PluginReport::new(path.clone());
        report.name = Some(name.clone());
        report.version = Some(builtin.version.as_str().to_owned());
        if let Some(first) = self.plugins.iter().find(|p| *p.name == name) {
            let error = PluginError::Duplicate {
                path,
                name,
                first: first.path.clone(),
            };
            return report.with_error(Status::Failed, error);
        }
        let provenance = crate::builtin::provenance_of(&builtin, &self.gate.identity.provenance);
        let watch = crate::watch::enter(
            format!("registering builtin plugin `{name}`"),
            self.in_process.hang_warning(),
        );
        let registering = Registering {
            path: &path,
            name: &name,
            provenance: &provenance,
            host: &self.gate.identity,
            config: self.gate.config_for(&name),
            kinds: &self.kinds,
        };
        let exports = registered(builtin.register, &registering);
        drop(watch);
        let exports = match exports {
            Ok(exports) => exports,
            Err(e) => return report.with_error(Status::Failed, e),
        };
        let record = LoadedPlugin {
            name: name.as_str().into(),
            path: path.clone(),
            provenance,
            builtin: true,
            source: path,
            running: None,
        };
        self.commit(report, record, Vec::new(), exports)
    }

    /// Reloads the plugin `name`, placed out of process, from its file, without restarting
    /// the host.
    ///
    /// Opens the file at the path the plugin was loaded from (a new build may have been
    /// installed there since), verifies it as [`Host::load`] does (read, trust step, judge:
    /// a lock, signature or policy refusal applies; the file must carry the same plugin
    /// name), and hands it to the plugin's running instance ([`crate::place::Running::reload`]), which
    /// starts it anew — for the `plugin-isolate` crate: a new worker that must register every
    /// capability the host holds, then the switch, calls in flight finishing on the old
    /// worker (see its documentation). A file built by another compiler than the host's runs
    /// in the worker the placement rescues it with, whichever worker the old file ran in.
    ///
    /// A reload that fails at any step leaves the old instance serving and says why
    /// ([`ReloadError::Refused`], with a reason code). Calls never fail because of a reload.
    /// In-process plugins cannot be reloaded ([`ReloadError::InProcess`]): their libraries
    /// are never unloaded. [`Host::plugins`] keeps listing the provenance of the first load.
    ///
    /// Takes `&self`, so one thread can reload while others call through their handles.
    pub fn reload(&self, name: &str) -> Result<PluginReport, ReloadError> {
        let Some(record) = self.plugins.iter().find(|p| &*p.name == name) else {
            return Err(ReloadError::NotLoaded {
                name: name.to_owned(),
            });
        };
        let Some(running) = &record.running else {
            return Err(ReloadError::InProcess {
                name: name.to_owned(),
            });
        };
        let refused = |reason: ReasonCode, message: String| {
            tracing::warn!(
                "[{reason}] reloading plugin `{name}` failed, its old worker serves on: {}",
                crate::text::printable(&message)
            );
            ReloadError::Refused {
                name: name.to_owned(),
                reason,
                message,
            }
        };
        let path = &record.source;
        tracing::debug!(
            "reloading plugin `{name}` from {}",
            crate::text::printable(&path.display().to_string())
        );
        let (mut report, verified) =
            self.verify_with(path, &HashMap::new(), None, Some(name), true);
        let Some(verified) = verified else {
            let reason = report.reason.unwrap_or(ReasonCode::NotALibrary);
            let message = report
                .message
                .unwrap_or_else(|| format!("the file is {}", report.status.as_str()));
            return Err(refused(reason, message));
        };
        if verified.provenance.name != name {
            let message = format!(
                "{} now holds plugin `{}`, not `{name}`",
                path.display(),
                crate::text::printable(&verified.provenance.name)
            );
            return Err(refused(ReasonCode::NameMismatch, message));
        }
        if let Some(hook) = &self.before_load {
            hook(path);
        }
        let version = verified.provenance.version.to_string();
        let request = self.request(name, path, &record.path, &report);
        let capabilities = running
            .reload(&request, verified)
            .map_err(|(reason, message)| refused(reason, message))?;
        tracing::info!(
            "reloaded plugin `{name}` {version} from {}",
            crate::text::printable(&path.display().to_string())
        );
        report.isolated = true;
        report.status = Status::Loaded;
        report.capabilities = capabilities;
        Ok(report)
    }

    /// Builds the capability index of `dirs` (in order) from provenance alone, registering
    /// the builtins first and loading at once the plugins that declare no capabilities (see
    /// the [module documentation](crate::lazy)). Returns the reports of what was decided now:
    /// builtins, files refused for unreadable provenance, shadowed files, files that take a
    /// builtin's name, and the plugins loaded up front. The indexed plugins are not reported
    /// until they are loaded ([`Host::lazy_reports`]); [`Host::indexed`] lists them.
    ///
    /// Calling it again adds more directories after those already indexed.
    pub fn index(&mut self, dirs: &[impl AsRef<Path>]) -> Result<Vec<PluginReport>, DiscoverError> {
        self.with_lazy(|lazy, host| lazy.index(host, dirs))
    }

    /// Runs `f` on the lazy state taken out of the host (which `f` also needs), and puts it
    /// back — after a panic too (application code in a placement or `before_load` may
    /// panic, and the application may catch it: the index must not be lost with it).
    fn with_lazy<T>(&mut self, f: impl FnOnce(&mut Lazy, &mut Host) -> T) -> T {
        let mut lazy = std::mem::take(&mut self.lazy);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut lazy, self)));
        self.lazy = lazy;
        match outcome {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// The plugins in the index, in path order, and whether each was loaded.
    pub fn indexed(&self) -> Vec<IndexedPlugin> {
        self.lazy.index.plugins()
    }

    /// The reports of the plugins loaded (or tried) on first use, in that order.
    pub fn lazy_reports(&self) -> &[PluginReport] {
        &self.lazy.reports
    }

    /// Makes capability `name` of kind `kind` available in the [`Host::registry`]: at once if
    /// it is there, else by verifying, loading and registering the indexed plugin that
    /// declares it (the next one in path order if that one is refused or does not register
    /// it). No other library is opened, but for earlier plugins declaring one of the same
    /// capabilities (see the [module documentation](crate::lazy)).
    pub fn load_capability(&mut self, kind: &str, name: &str) -> Result<(), LazyError> {
        self.with_lazy(|lazy, host| lazy.load_capability(host, kind, name))
    }

    /// [`Host::load_capability`] of `K`'s kind, then the capability as `K`'s type
    /// ([`crate::Registry::get`], layout check included).
    pub fn get_lazy<K: CapabilityKind>(&mut self, name: &str) -> Result<&K::Object, LazyError> {
        self.load_capability(K::KIND, name)?;
        Ok(self.registry.get::<K>(name)?)
    }

    /// Notes, until the returned watch is dropped, that this thread is about to call the
    /// capabilities `(kind, name)` (one, or a chain of transforms): if an in-process plugin
    /// among their providers calls `exit` or crashes the process meanwhile, what is printed
    /// names the capability, the plugin and its file, as during loading (an exit then ends
    /// the process with [`crate::PLUGIN_EXIT_STATUS`]). `None` when no provider runs in-process (an
    /// isolated plugin's crash is an error of the call).
    ///
    /// ```ignore
    /// let _watch = host.calling(&[("command", "hello")]);
    /// let out = command.call(args);
    /// ```
    pub fn calling(&self, capabilities: &[(&str, &str)]) -> Option<crate::CallWatch> {
        crate::watch::calling(&self.registry, &self.plugins, capabilities)
    }

    /// Registers the pending builtins, except those a file among `candidates` replaces.
    fn register_builtins(&mut self, candidates: &[PathBuf]) -> Vec<PluginReport> {
        let mut builtins = std::mem::take(&mut self.builtins);
        let pending = builtins.take(candidates, |path| {
            self.verify(path).status == Status::Verified
        });
        self.builtins = builtins;
        pending.into_iter().map(|b| self.add_builtin(b)).collect()
    }
}

impl Loader for Host {
    fn candidates(&self, found: Vec<PathBuf>) -> Vec<PathBuf> {
        self.gate.candidates(found)
    }

    fn register_builtins(&mut self, candidates: &dyn Fn() -> Vec<PathBuf>) -> Vec<PluginReport> {
        let candidates = match self.builtins.may_be_replaced() {
            true => candidates(),
            false => Vec::new(),
        };
        Host::register_builtins(self, &candidates)
    }

    fn load(&mut self, path: &Path) -> PluginReport {
        Host::load(self, path)
    }

    fn load_as(&mut self, path: &Path, name: &str) -> PluginReport {
        let (report, verified) = self.verify_with(path, &HashMap::new(), None, None, true);
        // Whatever else is said of it (refused, disabled): another plugin than the one
        // indexed is first of all a file that changed since.
        if let Some(found) = report.name.clone().filter(|found| found != name) {
            let error = PluginError::NotAsIndexed {
                path: path.to_owned(),
                indexed: name.to_owned(),
                found,
            };
            return report.with_error(Status::Rejected, error);
        }
        match verified {
            Some(verified) => self.place(report, verified),
            None => report,
        }
    }

    fn verify(&self, path: &Path) -> PluginReport {
        Host::verify(self, path)
    }

    fn refused_by_settings(&self, path: &Path, name: &str) -> bool {
        let misnamed = self.gate.configured_name(path).is_some_and(|n| n != name);
        misnamed || self.gate.is_disabled(name)
    }

    fn disabled(&self) -> Vec<String> {
        let settings = self.gate.plugins.iter();
        settings
            .filter(|(_, s)| s.disabled)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn is_builtin(&self, name: &[u8]) -> bool {
        self.plugins
            .iter()
            .any(|p| p.builtin && p.name.as_bytes() == name)
            || self
                .failed_builtins
                .iter()
                .any(|(n, _)| n.as_bytes() == name)
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Where the verified file is, links resolved. On Linux, the kernel's name for the very
/// descriptor that was verified (one `readlink`, and the file itself, where walking `path`
/// again would take a `readlink` per component and find whatever the path names by then);
/// for a file removed since, the last name it had; else `path` canonicalized.
fn resolved_path(file: &std::fs::File, path: &Path) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Some(target) = std::fs::read_link(link).ok().filter(|t| t.is_absolute()) {
            // Removed (no link left): the kernel's name is its last one, ` (deleted)` after
            // it, and the path may name another file by now. Told by the file's link count
            // (asked only of a name that ends so: an ordinary load pays no call for it), not
            // by its name, which may end so of itself.
            let last = target.as_os_str().as_bytes().strip_suffix(b" (deleted)");
            return match last {
                Some(last) if file.metadata().is_ok_and(|m| m.nlink() == 0) => {
                    PathBuf::from(std::ffi::OsStr::from_bytes(last))
                }
                _ => target,
            };
        }
    }
    // On Windows the name of the very handle that was verified (held open, shared for
    // reading only, until the load): a directory above the file renamed since, or a link
    // that led to it replaced, leaves the path leading elsewhere, not this name.
    #[cfg(windows)]
    if let Some(name) = crate::windows::final_path(file) {
        return name;
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    let _ = file;
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs;

    use super::resolved_path;

    #[test]
    fn the_resolved_path_is_the_open_file_s_not_what_its_path_names_later() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        for d in [&first, &second] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("libx.so"), b"x").unwrap();
        }
        let link = dir.path().join("plugins");
        std::os::unix::fs::symlink(&first, &link).unwrap();
        let path = link.join("libx.so");
        let file = fs::File::open(&path).unwrap();
        let real = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(resolved_path(&file, &path), real.join("first/libx.so"));
        // The link now names another directory: the file opened is still the first.
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&second, &link).unwrap();
        assert_eq!(resolved_path(&file, &path), real.join("first/libx.so"));
        // Removed: the last name it had, not what the path names now (another file).
        fs::remove_file(first.join("libx.so")).unwrap();
        assert_eq!(resolved_path(&file, &path), real.join("first/libx.so"));
        // A live file whose name ends as a removed one's does: its own name.
        let odd = second.join("liby.so (deleted)");
        fs::write(&odd, b"y").unwrap();
        let file = fs::File::open(&odd).unwrap();
        assert_eq!(
            resolved_path(&file, &odd),
            real.join("second/liby.so (deleted)")
        );
    }
}
