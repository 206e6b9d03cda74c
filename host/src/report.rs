//! What the host reports about each plugin file.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::PluginError;
use crate::policy::{Check, CheckStatus};
use crate::reason::ReasonCode;
use crate::registry::CapabilityInfo;
use crate::trust::{FileDigest, SignatureStatus, TrustWarning};

/// Where a plugin file ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Compiled into the host and registered ([`crate::HostBuilder::builtin`]).
    Builtin,
    /// Verified, loaded and registered.
    Loaded,
    /// Verified and compatible, not loaded (a `--no-load` scan or `check`).
    Verified,
    /// Refused before loading: no plugin code ran.
    Rejected,
    /// Not loaded because the configuration disables it; no plugin code ran.
    Disabled,
    /// Loaded, then failed (layout check, registration, conflict); its capabilities were not
    /// registered, but its code did run.
    Failed,
    /// Not used: a file earlier in the search path provides a plugin of the same name (the
    /// message says where); nothing of this file was loaded. Reason code `duplicate-plugin`.
    Shadowed,
}

impl Status {
    /// The status as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Builtin => "builtin",
            Status::Loaded => "loaded",
            Status::Verified => "verified",
            Status::Rejected => "rejected",
            Status::Disabled => "disabled",
            Status::Failed => "failed",
            Status::Shadowed => "shadowed",
        }
    }
}

/// The outcome for one plugin file.
#[derive(Debug, Serialize)]
pub struct PluginReport {
    /// The file, as found in the plugin directory (in JSON: as text, with bytes that are not
    /// UTF-8 replaced by U+FFFD).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// The plugin's name, when its provenance could be read.
    pub name: Option<String>,
    /// The plugin's version, when its provenance could be read.
    pub version: Option<String>,
    /// Where it ended up.
    pub status: Status,
    /// Why it was rejected or failed.
    pub reason: Option<ReasonCode>,
    /// What went wrong and how to fix it.
    pub message: Option<String>,
    /// Every provenance check, with both values (empty when the provenance was unreadable).
    pub checks: Vec<Check>,
    /// The capabilities it registered.
    pub capabilities: Vec<CapabilityInfo>,
    /// Its signature's status; `None` (`null`) when signatures are ignored or the trust step
    /// was not reached.
    pub signature: Option<SignatureStatus>,
    /// What the trust step found that did not refuse it (signature mode `warn`).
    pub trust_warnings: Vec<TrustWarning>,
    /// Whether it runs in a worker process of its own (a [`crate::place::Placement`] out of
    /// process: the `plugin-isolate` crate).
    pub isolated: bool,
    /// The worker built with another toolchain that runs it, when the host refused it
    /// in-process for a toolchain difference ([`crate::place::Placement::rescue`]).
    pub worker: Option<WorkerChoice>,
    /// Its sha256, size and provenance digest, when the trust step hashed it.
    #[serde(skip)]
    pub digest: Option<FileDigest>,
    /// The typed error behind `reason` and `message`.
    #[serde(skip)]
    pub error: Option<PluginError>,
    /// The file's device and inode, once opened.
    #[serde(skip)]
    pub(crate) file_id: Option<(u64, u64)>,
}

fn lossy_path<S: serde::Serializer>(
    path: &std::path::Path,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

impl PluginReport {
    /// A report of `path` about to be judged: `rejected`, nothing known yet.
    pub fn new(path: PathBuf) -> Self {
        PluginReport {
            path,
            name: None,
            version: None,
            status: Status::Rejected,
            reason: None,
            message: None,
            checks: Vec::new(),
            capabilities: Vec::new(),
            signature: None,
            trust_warnings: Vec::new(),
            isolated: false,
            worker: None,
            digest: None,
            error: None,
            file_id: None,
        }
    }

    /// The report ending `status` because of `error` (its reason code and message).
    pub fn with_error(mut self, status: Status, error: PluginError) -> Self {
        self.status = status;
        self.reason = Some(error.reason());
        self.message = Some(error.to_string());
        self.error = Some(error);
        self
    }

    /// The checks that warn.
    pub fn warnings(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Warn)
    }

    /// Whether the plugin is usable (builtin, loaded, or verified in a no-load scan).
    pub fn is_ok(&self) -> bool {
        matches!(
            self.status,
            Status::Builtin | Status::Loaded | Status::Verified
        )
    }
}

/// The worker a plugin refused in-process runs in instead, and why (in a [`PluginReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerChoice {
    /// The worker binary.
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// The compiler that built it (and the plugin), as `rustc --version` prints it.
    pub rustc: String,
    /// Why the plugin does not run in-process.
    pub why: String,
}

impl std::fmt::Display for WorkerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runs in worker {} (rustc {}): {}",
            crate::text::printable(&self.path.to_string_lossy()),
            self.rustc,
            self.why
        )
    }
}
