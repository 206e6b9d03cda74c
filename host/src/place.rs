//! Placement: where a verified plugin runs.
//!
//! The host decides *whether* a file may run (read, trust, judge: [`crate::Host::verify`]);
//! a placement decides *where*, and hands back the capabilities to register. There are
//! three:
//! - **in-process** ([`InProcess`], the default): the verified bytes are mapped into this
//!   process and the plugin's `register` runs here;
//! - **builtins** ([`crate::HostBuilder::builtin`]): compiled into the host, registered
//!   through the same `register` path, never read from a file;
//! - **out of process**: any [`Placement`] an application adds with
//!   [`crate::HostBuilder::placement`] — the `plugin-isolate` crate's `Isolation` runs a
//!   plugin in a worker process of its own and registers proxies that forward calls to it.
//!
//! The host keeps one record per plugin ([`crate::LoadedPlugin`]); a plugin placed out of
//! process keeps its [`Running`] instance there, which the registry asks on each lookup
//! whether the plugin was retired, and which [`crate::Host::reload`] asks to restart on a
//! newly verified file.

use std::any::Any;
use std::fs::{File, Metadata};
use std::path::Path;
use std::sync::Arc;

use plugin_api::provenance::Provenance;
use plugin_api::CapabilityExport;

use crate::error::PluginError;
use crate::identity::HostIdentity;
use crate::kinds::Kinds;
use crate::policy::{CheckKind, Policy, Verdict};
use crate::reason::ReasonCode;
use crate::registry::CapabilityInfo;
use crate::report::{Status, WorkerChoice};

pub(crate) mod in_process;

pub use in_process::InProcess;

/// A file whose provenance passed the policy, still open: what is placed is this very file.
pub struct Verified {
    pub(crate) file: File,
    pub(crate) meta: Metadata,
    /// Shared, so that the record a placed plugin keeps is this one, not a copy of it.
    pub(crate) provenance: std::sync::Arc<Provenance>,
    /// The crates it shares with the host at another version or content, described: what
    /// a layout mismatch is most likely due to.
    pub(crate) differences: Vec<String>,
    /// A sealed copy of the whole file, made by the trust step to hash exactly what is
    /// loaded: mapped instead of a new copy.
    pub(crate) sealed: Option<File>,
    /// A sealed copy made ahead during a scan (Linux, see `ahead`), checked to hold what
    /// was verified: mapped instead of a new copy.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) ahead: Option<File>,
    /// A kept copy made ahead during a scan (Linux, see `ahead`), not yet in the store: put
    /// in place by the mapper once checked to hold what was verified.
    #[cfg(target_os = "linux")]
    pub(crate) kept_ahead: std::sync::Mutex<Option<crate::store::Partial>>,
}

impl Verified {
    /// Its provenance.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The crates it shares with the host at another version or content, described.
    pub fn differences(&self) -> &[String] {
        &self.differences
    }

    /// The verified bytes: the trust step's sealed copy when it made one, else the file as
    /// opened for verification (so a file renamed over the path is never what runs).
    pub fn into_file(self) -> File {
        self.sealed.unwrap_or(self.file)
    }
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("name", &self.provenance.name)
            .field("len", &self.meta.len())
            .finish_non_exhaustive()
    }
}

/// What a placement is told about the plugin it places.
pub struct Request<'a> {
    /// The plugin's name (from its provenance).
    pub name: &'a str,
    /// The path it was verified at, as given (for messages).
    pub path: &'a Path,
    /// The same, resolved (what [`crate::LoadedPlugin::path`] records).
    pub resolved: &'a Path,
    /// The host it is placed for.
    pub host: &'a HostIdentity,
    /// The policy it was judged under.
    pub policy: &'a Policy,
    /// Its configuration string.
    pub config: &'a str,
    /// The capability kinds the host accepts.
    pub kinds: &'a Kinds,
    /// The worker [`Placement::rescue`] chose for it, if any.
    pub worker: Option<&'a WorkerChoice>,
}

/// A placed plugin: the capabilities to register (its own objects, or proxies), and its
/// instance when it runs out of process.
pub struct Placed {
    /// The capabilities, in the order registered.
    pub exports: Vec<CapabilityExport>,
    /// The instance out of process (kept in the plugin's record); `None` in-process.
    pub running: Option<Arc<dyn Running>>,
}

/// Why a placement did not place a plugin: how its report ends.
#[derive(Debug)]
pub struct Refusal {
    /// `rejected` (refused before any of its code ran) or `failed`.
    pub status: Status,
    /// Why, with its reason code.
    pub error: Box<PluginError>,
}

impl Refusal {
    /// A refusal ending the report `status`.
    pub fn new(status: Status, error: PluginError) -> Self {
        Refusal {
            status,
            error: Box::new(error),
        }
    }
}

impl From<PluginError> for Refusal {
    fn from(error: PluginError) -> Self {
        Refusal::new(Status::Failed, error)
    }
}

/// A place verified plugins can run in other than the host's own process.
pub trait Placement: Send + Sync {
    /// Whether this placement runs the plugin named `name` (the application's choice, e.g.
    /// from its configuration); other plugins run in-process.
    fn takes(&self, name: &str) -> bool;

    /// For a plugin the judge refused in-process for a toolchain difference (`refused` is
    /// the failed check): another identity it may run against, and the verdict against it.
    /// The plugin then runs in this placement with [`Request::worker`] set.
    fn rescue(
        &self,
        host: &Provenance,
        plugin: &Provenance,
        policy: &Policy,
        refused: CheckKind,
    ) -> Option<(WorkerChoice, Verdict)> {
        let _ = (host, plugin, policy, refused);
        None
    }

    /// What to add to a refusal for a toolchain difference that [`Placement::rescue`] did not
    /// resolve: how the user could still run the plugin here (empty: nothing to say).
    fn hint(&self, host: &Provenance, plugin: &Provenance, policy: &Policy) -> String {
        let _ = (host, plugin, policy);
        String::new()
    }

    /// Places the verified plugin and returns what to register.
    fn place(&self, request: &Request<'_>, verified: Verified) -> Result<Placed, Refusal>;
}

/// A plugin placed out of process, as its record keeps it.
pub trait Running: Send + Sync + 'static {
    /// Set once the plugin was given up on (its last failure's reason code and why): its
    /// capabilities' lookups then fail [`crate::LookupError::Unregistered`].
    fn retired(&self) -> Option<(ReasonCode, String)>;

    /// Restarts the plugin on `verified` (its file verified again, [`crate::Host::reload`]):
    /// the capabilities it now registers, or why not — the old instance serving on.
    fn reload(
        &self,
        request: &Request<'_>,
        verified: Verified,
    ) -> Result<Vec<CapabilityInfo>, (ReasonCode, String)>;

    /// For the placement's own view of its instances (downcast).
    fn as_any(&self) -> &dyn Any;
}
