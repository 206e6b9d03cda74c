//! Building a host: every setting in one place, then [`HostBuilder::build`] (as wasmtime's
//! `Config` → `Engine`). The [`crate::Host`] it builds only loads and serves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plugin_api::Builtin;

use crate::builtin::Builtins;
use crate::gate::Gate;
use crate::host::{BeforeLoad, Host, Parts};
use crate::identity::HostIdentity;
use crate::kinds::Kinds;
use crate::map::LoadFrom;
use crate::place::{InProcess, Placement};
use crate::policy::Policy;
use crate::settings::PluginSettings;
use crate::trust::{Lock, SignatureMode, Trust, TrustedKey};

/// A host's constructors live with its builder: the host itself knows nothing of how it is
/// set up.
impl Host {
    /// A host with the `default` policy, the demo capability kinds and nothing else set:
    /// [`Host::builder`]`(identity).build()`.
    pub fn new(identity: HostIdentity) -> Self {
        Host::builder(identity).build()
    }

    /// The settings of a host, to [`HostBuilder::build`] it.
    pub fn builder(identity: HostIdentity) -> HostBuilder {
        HostBuilder::new(identity)
    }
}

/// The settings of a [`Host`], gathered before it is built ([`Host::builder`]).
pub struct HostBuilder {
    identity: HostIdentity,
    policy: Policy,
    kinds: Kinds,
    plugins: HashMap<String, PluginSettings>,
    /// Plugin names in the order their files were given.
    files: Vec<String>,
    trust: Trust,
    in_process: InProcess,
    before_load: Option<BeforeLoad>,
    builtins: Builtins,
    index_cache: Option<PathBuf>,
    placement: Option<Arc<dyn Placement>>,
}

impl HostBuilder {
    fn new(identity: HostIdentity) -> Self {
        HostBuilder {
            identity,
            policy: Policy::default(),
            kinds: Kinds::demo(),
            plugins: HashMap::new(),
            files: Vec::new(),
            trust: Trust::default(),
            in_process: InProcess::default(),
            before_load: None,
            builtins: Builtins::default(),
            index_cache: None,
            placement: None,
        }
    }

    /// The policy plugins are judged under (`default` unless set).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The capability kinds the host accepts ([`Kinds::demo`] unless set).
    pub fn kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// Settings of the plugin named `name` (repeatable: a later call's settings win over an
    /// earlier one's).
    pub fn plugin(mut self, name: impl Into<String>, settings: PluginSettings) -> Self {
        let name = name.into();
        if settings.file.is_some() {
            self.files.retain(|n| *n != name);
            self.files.push(name.clone());
        }
        self.plugins.entry(name).or_default().merge(settings);
        self
    }

    /// Enforces `lock`: a plugin it lists is refused `checksum-mismatch` unless its file has
    /// the locked sha256, size and provenance digest; with `locked`, a plugin it does not
    /// list is refused `not-locked`. Either way before any of its code runs.
    pub fn lock(mut self, lock: Lock, locked: bool) -> Self {
        self.trust.lock = Some((lock, locked));
        self
    }

    /// Trusts signatures made by `key` (see [`TrustedKey::parse`]; repeatable). Unless a mode
    /// is set, trusting any key makes the signature mode `warn`.
    pub fn trusted_key(mut self, key: TrustedKey) -> Self {
        self.trust.keys.push(key);
        self
    }

    /// What the host does about plugin signatures (see [`SignatureMode`]; a plugin's own:
    /// [`PluginSettings::signatures`]).
    pub fn signatures(mut self, mode: SignatureMode) -> Self {
        self.trust.mode = Some(mode);
        self
    }

    /// Hashes every file verified, lock or not, and keeps the result in
    /// [`crate::PluginReport::digest`]: what [`Lock::lock_report`] records (`plugin-host
    /// lock`).
    pub fn digests(mut self, record: bool) -> Self {
        self.trust.record_digests = record;
        self
    }

    /// What the dynamic loader maps: a sealed private copy (the default) or the plugin file
    /// itself (see [`LoadFrom`] for what that risks).
    pub fn load_from(mut self, load_from: LoadFrom) -> Self {
        self.in_process.set_load_from(load_from);
        self
    }

    /// Where [`LoadFrom::KeptCopy`] keeps its copies: a directory of this user's with no
    /// access for anyone else (made when missing). Without it, the default place (see
    /// [`LoadFrom::KeptCopy`]).
    pub fn copy_store(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.in_process.set_copy_store(dir.into());
        self
    }

    /// How long a plugin's constructors or `register` may run before the host logs a
    /// warning naming it ([`crate::DEFAULT_HANG_WARNING`]; `None`: never warn).
    pub fn hang_warning(mut self, after: Option<Duration>) -> Self {
        self.in_process.set_hang_warning(after);
        self
    }

    /// Checks the layout of every capability when it is registered, not on first use: a
    /// plugin with a capability the host could never use then ends `failed`
    /// (`layout-mismatch`) instead of `loaded`. Costs `abi_stable`'s layout check per
    /// capability at load time.
    pub fn layout_check_at_load(mut self, eager: bool) -> Self {
        self.in_process.set_layout_check_at_load(eager);
        self
    }

    /// Calls `hook` with the path of each file that passed verification, just before it is
    /// placed (for instrumentation, and for tests that swap files at that moment).
    pub fn before_load(mut self, hook: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        self.before_load = Some(Box::new(hook));
        self
    }

    /// Adds a plugin compiled into the host (repeatable). It is registered at the start of
    /// the next [`Host::scan`] (reported first, as [`crate::Status::Builtin`]), through the
    /// very same registration as a loaded plugin: configuration, kinds, capability checks
    /// and conflicts are identical. An external plugin of the same name is then
    /// `duplicate-plugin`, unless [`PluginSettings::replaces_builtin`] lets it take the
    /// builtin's place.
    pub fn builtin(mut self, builtin: Builtin) -> Self {
        self.builtins.add(builtin);
        self
    }

    /// Keeps what [`Host::index`] reads from each file, and what it lists in each directory,
    /// in a cache file at `path` (e.g. `$XDG_CACHE_HOME/<app>/index.bin`), so the next index
    /// neither reads the files nor lists a directory that did not change. An entry counts
    /// only for the very directory it was listed in (same device, inode, modification and
    /// change times), or else for the very file it was made from (same device, inode, size,
    /// modification and change times); even a stale one only chooses which library to
    /// verify, which is then read, trusted and judged afresh before loading.
    pub fn index_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.index_cache = Some(path.into());
        self
    }

    /// Places the plugins `placement` takes out of process (e.g. the `plugin-isolate`
    /// crate's `Isolation`: a worker process per plugin); the others run in-process.
    pub fn placement(mut self, placement: impl Placement + 'static) -> Self {
        self.placement = Some(Arc::new(placement));
        self
    }

    /// The host.
    pub fn build(mut self) -> Host {
        let mut files = Vec::new();
        for name in &self.files {
            if let Some(file) = self.plugins.get(name).and_then(|s| s.file.clone()) {
                files.push((file, name.clone()));
            }
        }
        for (name, settings) in &self.plugins {
            if let Some(mode) = settings.signatures {
                self.trust.per_plugin.insert(name.clone(), mode);
            }
            if settings.replaces_builtin {
                self.builtins.replaceable(name.clone());
            }
        }
        let gate = Gate::new(self.identity, self.policy, self.plugins, files, self.trust);
        Host::from_parts(Parts {
            gate,
            kinds: self.kinds,
            in_process: self.in_process,
            placement: self.placement,
            before_load: self.before_load,
            builtins: self.builtins,
            index_cache: self.index_cache,
        })
    }
}
