//! The host: verification, loading and registration of plugins, one file or whole directories.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plugin_api::provenance::{DecodeError, Provenance};

use crate::discover::{discover, DiscoverError};
use crate::error::PluginError;
use crate::load::{init_root, open_library, register, Registration};
use crate::policy::{judge_with, Policy, PreparedHost};
use crate::read::{open_sized, read_sized};
use crate::registry::{Kinds, Registry};
use crate::report::{PluginReport, Status};

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
    /// Its provenance.
    pub provenance: Provenance,
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
}

/// See [`Host::with_before_load`].
type BeforeLoad = Box<dyn Fn(&Path) + Send + Sync>;

/// A file whose provenance passed the policy, still open: what is loaded is this very file.
struct Verified {
    file: File,
    provenance: Provenance,
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
        }
    }

    /// Calls `hook` with the path of each file that passed verification, just before it is
    /// loaded (for instrumentation, and for tests that swap files at that moment).
    pub fn with_before_load(mut self, hook: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        self.before_load = Some(Box::new(hook));
        self
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
        self.verify_inner(path, &HashMap::new()).0
    }

    /// Verifies, loads and registers one file.
    pub fn load(&mut self, path: &Path) -> PluginReport {
        let (report, verified) = self.verify_inner(path, &HashMap::new());
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
        let mut verified_names = HashMap::new();
        let mut reports = Vec::new();
        for path in discover(dirs)? {
            let (report, verified) = self.verify_inner(&path, &verified_names);
            let report = match (verified, mode) {
                (Some(verified), ScanMode::Load) => self.load_verified(report, verified),
                (Some(verified), ScanMode::VerifyOnly) => {
                    verified_names.insert(verified.provenance.name, report.path.clone());
                    report
                }
                (None, _) => report,
            };
            reports.push(report);
        }
        Ok(reports)
    }

    fn verify_inner(
        &self,
        path: &Path,
        verified_names: &HashMap<String, PathBuf>,
    ) -> (PluginReport, Option<Verified>) {
        let report = PluginReport::new(path.to_owned());
        let (file, len) = match open_sized(path) {
            Ok(opened) => opened,
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };
        let provenance = match read_sized(path, &file, len) {
            Ok(p) => p,
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };
        let mut report = report;
        report.name = Some(provenance.name.clone());
        report.version = Some(provenance.version.to_string());
        let verdict = judge_with(
            &self.identity.provenance,
            &self.host_deps,
            &provenance,
            &self.policy,
        );
        let failure = verdict
            .failure()
            .map(|c| (c.check.reason(), c.message.clone()));
        report.checks = verdict.checks;
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
            .find(|p| *p.name == provenance.name)
            .map(|p| p.path.clone())
            .or_else(|| verified_names.get(&provenance.name).cloned());
        if let Some(first) = first {
            let error = PluginError::Duplicate {
                path: path.to_owned(),
                name: provenance.name.clone(),
                first,
            };
            return (report.with_error(Status::Rejected, error), None);
        }
        report.status = Status::Verified;
        (report, Some(Verified { file, provenance }))
    }

    fn load_verified(&mut self, mut report: PluginReport, verified: Verified) -> PluginReport {
        let path = report.path.clone();
        let name = verified.provenance.name.clone();
        if let Some(hook) = &self.before_load {
            hook(&path);
        }
        let resolved = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let header = match open_library(&loadable_path(&verified.file, &resolved), &path) {
            Ok(header) => header,
            // A failed `dlopen` mapped nothing; the descriptor is closed with `verified.file`.
            Err(e) => return report.with_error(Status::Failed, e),
        };
        // Once a library is mapped, its descriptor stays open for good: the library is never
        // unloaded, and glibc remembers it by the `/proc/self/fd/N` name it was opened by, so
        // that name must never come to mean another file.
        std::mem::forget(verified.file);
        let root = match init_root(header, &path) {
            Ok(root) => root,
            Err(e) => return report.with_error(Status::Failed, e),
        };
        let no_config = String::new();
        let mut registration = Registration {
            host_name: &self.identity.name,
            host_version: &self.identity.version,
            config: self.configs.get(&name).unwrap_or(&no_config),
            kinds: &self.kinds,
            staged: Vec::new(),
            self_conflict: None,
        };
        if let Err(e) = register(root, &path, &name, &mut registration) {
            return report.with_error(Status::Failed, e);
        }
        let conflict = registration
            .self_conflict
            .take()
            .map(|(kind, capability)| (kind, capability, name.clone()))
            .or_else(|| self.registry.conflict(&registration.staged));
        if let Some((kind, capability, holder)) = conflict {
            let error = PluginError::CapabilityConflict {
                path,
                name,
                kind,
                capability,
                holder,
            };
            return report.with_error(Status::Failed, error);
        }
        let staged = std::mem::take(&mut registration.staged);
        let plugin: Arc<str> = name.into();
        let mut capabilities: Vec<_> = staged
            .iter()
            .map(|c| crate::registry::CapabilityInfo {
                kind: c.kind().to_owned(),
                name: c.name().to_owned(),
            })
            .collect();
        capabilities.sort();
        self.registry.commit(&plugin, &self.kinds, staged);
        self.plugins.push(LoadedPlugin {
            name: plugin,
            path: resolved,
            provenance: verified.provenance,
        });
        report.capabilities = capabilities;
        report.status = Status::Loaded;
        report
    }
}

/// The path handed to the dynamic loader for a verified, still-open file.
///
/// On Linux it is `/proc/self/fd/N`: the loader opens exactly the file that was verified, even
/// if the directory entry was replaced in between. Elsewhere there is no such name for an open
/// file, and the canonical path is used: a file swapped in between verification and loading
/// would be loaded unverified there, so plugin directories must not be writable by others.
fn loadable_path(file: &File, resolved: &Path) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if Path::new("/proc/self/fd").is_dir() {
            return PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        }
        tracing::warn!(
            "/proc is not mounted: loading {} by path, so a file swapped in after verification \
             would not be detected",
            resolved.display()
        );
        resolved.to_owned()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        resolved.to_owned()
    }
}
