//! Isolation: a plugin in a worker process of its own, behind the same capability handles.
//!
//! A plugin the host isolates ([`Host::with_isolation`], `isolation = "process"` in its
//! `[plugins.NAME]` table, `--isolate NAME|all`) is verified in the host exactly as an
//! in-process one (read, trust, judge: no plugin code runs), and then, instead of being
//! mapped into the host, is handed to a worker process: the host's own binary, run as
//! `plugin-host __worker --fd N` (an application does the same with one line in its `main`,
//! see [`worker::serve`]). The worker receives the verified bytes as an inherited descriptor
//! (the trust step's sealed copy when there is one), verifies them again against the same
//! policy, loads and registers the plugin as [`Host::load`] does, and reports its
//! capabilities. The host registers a *proxy* for each: a `command` or `transform` object of
//! the usual type that forwards calls to the worker, so `registry().get::<CommandKind>(..)`
//! hands out the same kind of handle and callers cannot tell, except by the new errors.
//!
//! What it protects against: a plugin that aborts, segfaults, exits, loops forever or
//! panics takes down only its worker. The call in flight fails with a [`CallError`] whose
//! message ends in the reason code ([`reason`] reads it back): `plugin-crashed` (signal or
//! exit status, and the tail of the worker's stderr), `plugin-timeout` (the call passed its
//! deadline, [`Host::with_call_timeout`]; the worker is killed), `protocol-error`; a worker
//! that fails the handshake is `handshake-failed`. The next call starts a new worker (after
//! a backoff from the second consecutive failure on); after [`MAX_FAILURES`] consecutive
//! failures the plugin is unregistered: its lookups fail with
//! [`crate::LookupError::Unregistered`], and [`Host::isolated`] says why.
//!
//! What it costs: a process per isolated plugin, a start (tens of milliseconds: exec,
//! handshake, verification and loading in the worker), and per call a round trip through
//! shared memory ([`shm`]): the call's head encoded into a reused buffer and copied into the
//! ring with its payload (a transform's input straight from the caller's slice), read in
//! place by the worker; the reply's head copied out into another reused buffer and its
//! payload straight into the caller's output — no allocation on the host's side beyond what
//! the capability returns (a command's `RString`), no system call while the worker is awake,
//! a futex wake-up when it sleeps (BENCHMARKS.md has the numbers).
//!
//! Channels: a worker gets a control socket (`--fd N`: handshake, `load`, the plugin's log
//! records) and the shared-memory call channel (`--shm M`: `call`, `reply`, `shutdown`),
//! which protocol version 2 adds; a worker that speaks only version 1 gets its calls over the
//! socket, through the same `Sender`/`Receiver` transport as before (see `spawn`).
//!
//! Calls to one isolated plugin are served **one at a time**, in the order they take its
//! lock: a worker runs one call at a time, and a deadline applies from the moment a call is
//! sent. Different isolated plugins run in parallel.
//!
//! The wire: [`plugin_protocol`] (no I/O, versioned apart from `plugin-api`). Only kinds with
//! a wire encoding can be isolated; the two built-in kinds have one (`command`: arguments as
//! strings in, UTF-8 text out; `transform`: bytes in, bytes out), and an application gives
//! its own kinds one with [`wire::WireEncoding`] and [`crate::Kinds::with_wire`]. A plugin
//! that registers another kind fails to load isolated (`invalid-capability`).
//!
//! Reload: [`Host::reload`] replaces an isolated plugin's worker by one started on the
//! plugin's current file, verified again, without restarting the host; calls in flight finish
//! on the old worker and no call fails because of it (see [`ReloadError`]).
//!
//! Orphans: each worker gets `PR_SET_PDEATHSIG(SIGKILL)` (set by a long-lived spawner thread,
//! since Linux sends it when the *thread* that forked ends), and watches the host: through
//! the call channel (the host's pidfd, and the host's end being closed) for a version-2
//! worker, at end of file on its control socket for a version-1 one. So workers die with the
//! host; dropping the [`Host`] stops them gracefully (shutdown message, then `SIGKILL` after a
//! grace period). Whatever a plugin forks dies with its worker: each worker leads a process
//! group of its own, which the host kills whole, and which a guard process the worker starts
//! (not its child) kills when the host could not (see `tree`). A plugin's children inherit no
//! descriptor of the worker's but 0, 1 and 2.
//!
//! Floods: what a worker can make the host hold (its stderr lines, its log records, the
//! control messages waiting for a caller, in number and in bytes) is bounded; a worker past a bound is killed and the call fails
//! `protocol-error` naming it (see `bounds`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plugin_api::CallError;

use crate::config::Isolation;
use crate::error::PluginError;
use crate::host::Host;
use crate::map::Verified;
use crate::policy::{CheckKind, Severity};
use crate::reason::ReasonCode;
use crate::report::{PluginReport, Status};

mod bounds;
mod proxy;
mod reload;
// The shared-memory channel: the transport of isolated plugins' calls (protocol version 2).
#[cfg(target_os = "linux")]
pub mod shm;
mod skew;
mod spawn;
mod supervise;
mod transport;
mod tree;
pub mod wire;
pub mod worker;

pub use reload::ReloadError;
pub(crate) use skew::WorkerBinary;
pub use skew::{worker_file_name, WorkerChoice};
pub(crate) use supervise::Supervisor;

/// The default deadline of a call into an isolated plugin.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a worker has to answer the handshake and load and register its plugin.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failures (crashes, timeouts, failed restarts) after which an isolated plugin
/// is unregistered.
pub const MAX_FAILURES: u32 = 3;

/// The isolation settings of a host.
#[derive(Clone)]
pub(crate) struct Settings {
    by_name: HashMap<String, Isolation>,
    default: Isolation,
    pub(crate) call_timeout: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) worker: Option<(PathBuf, Vec<OsString>)>,
    pub(crate) supervisors: Vec<Arc<Supervisor>>,
    /// The path each isolated plugin was loaded from, by name: what [`Host::reload`] opens.
    pub(crate) sources: HashMap<String, PathBuf>,
    /// Worker binaries built with other toolchains ([`Host::with_worker`]).
    pub(crate) workers: Vec<WorkerBinary>,
    /// This host is a worker's (it serves one plugin for another host): its refusals do not
    /// suggest building workers, which is the other host's business.
    pub(crate) in_worker: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            by_name: HashMap::new(),
            default: Isolation::InProcess,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            start_timeout: DEFAULT_START_TIMEOUT,
            worker: None,
            supervisors: Vec::new(),
            sources: HashMap::new(),
            workers: Vec::new(),
            in_worker: false,
        }
    }
}

impl Settings {
    /// Whether the plugin named `name` runs in a worker.
    pub(crate) fn isolates(&self, name: &str) -> bool {
        self.by_name.get(name).copied().unwrap_or(self.default) == Isolation::Process
    }
}

/// An isolated plugin's state, as [`Host::isolated`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatedPlugin {
    /// The plugin's name.
    pub name: String,
    /// Its worker's process id, while one runs.
    pub pid: Option<u32>,
    /// How many times its worker was started (the first start included).
    pub starts: u32,
    /// Failures since the last successful call.
    pub consecutive_failures: u32,
    /// Set once it was unregistered: the last failure's reason code and the message.
    pub unregistered: Option<(ReasonCode, String)>,
}

impl Host {
    /// Runs the plugin named `name` in-process or in a worker process of its own
    /// ([`Isolation::Process`], see [the module documentation](crate::isolate)).
    pub fn with_isolation(mut self, name: impl Into<String>, isolation: Isolation) -> Self {
        self.isolation.by_name.insert(name.into(), isolation);
        self
    }

    /// Runs every plugin without a setting of its own ([`Host::with_isolation`]) this way
    /// (builtins always run in-process).
    pub fn with_default_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation.default = isolation;
        self
    }

    /// Sets the deadline of each call into an isolated plugin ([`DEFAULT_CALL_TIMEOUT`]):
    /// past it the worker is killed and the call fails `plugin-timeout`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.isolation.call_timeout = timeout;
        self
    }

    /// Sets how long a worker may take to answer the handshake and to load and register its
    /// plugin ([`DEFAULT_START_TIMEOUT`]).
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.isolation.start_timeout = timeout;
        self
    }

    /// Sets the worker command: `program` run with `args`, then `--fd N` (the control
    /// socket). The default is this process's own executable with `__worker`, which is right
    /// for the `plugin-host` binary and for an application whose `main` calls
    /// [`worker::serve`] when its first argument is `__worker`.
    pub fn with_worker_command(
        mut self,
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        let args = args.into_iter().map(Into::into).collect();
        self.isolation.worker = Some((program.into(), args));
        self
    }

    /// The isolated plugins loaded so far, with their workers' state.
    pub fn isolated(&self) -> Vec<IsolatedPlugin> {
        self.isolation
            .supervisors
            .iter()
            .map(|s| s.status())
            .collect()
    }

    /// Whether the plugin named `name` runs in a worker.
    pub fn is_isolated(&self, name: &str) -> bool {
        self.isolation.isolates(name)
    }
}

/// The reason code an isolated call's error carries (`plugin-timeout`, `plugin-crashed`,
/// `handshake-failed`, `protocol-error`; or the reason the plugin was unregistered for), or
/// `None` for the plugin's own errors and panics.
pub fn reason(error: &CallError) -> Option<ReasonCode> {
    let message = error.message.as_str();
    let code = message.strip_suffix(']')?.rsplit_once(" [")?.1;
    ReasonCode::parse(code).filter(|r| {
        matches!(
            r,
            ReasonCode::PluginTimeout
                | ReasonCode::PluginCrashed
                | ReasonCode::HandshakeFailed
                | ReasonCode::ProtocolError
        )
    })
}

impl Host {
    /// Whether capabilities of `kind` can be isolated: a built-in kind with its wire
    /// encoding, or one the application gave one ([`crate::Kinds::with_wire`]).
    fn can_isolate(&self, kind: &str) -> bool {
        self.kinds().wire(kind).is_some() || proxy::WIRE_KINDS.contains(&kind)
    }

    /// The kinds of this host that can be isolated, sorted.
    fn wire_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.kinds().names();
        kinds.retain(|k| self.can_isolate(k));
        kinds
    }
}

impl Host {
    /// Starts a worker for a verified plugin and registers proxies for its capabilities.
    pub(crate) fn load_isolated(
        &mut self,
        mut report: PluginReport,
        verified: Verified,
        resolved: PathBuf,
    ) -> PluginReport {
        report.isolated = true;
        let path = report.path.clone();
        let name = verified.provenance.name.clone();
        let shown = path.display().to_string();
        if let Some(choice) = &report.worker {
            tracing::info!("plugin `{name}` {choice}");
        }
        // The verified bytes: the trust step's sealed copy when it made one, else the file
        // opened for verification (so a file renamed over the path is never what runs).
        let file = verified.sealed.unwrap_or(verified.file);
        let chosen = report.worker.as_ref().map(|w| w.path.as_path());
        let spec = match self.worker_spec(&name, &shown, file, chosen) {
            Ok(spec) => spec,
            Err(detail) => return fail(report, path, ReasonCode::HandshakeFailed, detail),
        };
        tracing::debug!("starting a worker for plugin `{name}` ({shown})");
        let (supervisor, capabilities) = match Supervisor::start(spec, self.isolation.call_timeout)
        {
            Ok(started) => started,
            Err(e) => {
                let status = match e.refused.as_deref() {
                    Some("rejected") => Status::Rejected,
                    _ => Status::Failed,
                };
                // The worker's own report names the file already.
                let prefix = format!("{shown}: ");
                let detail = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
                let error = PluginError::Load {
                    path,
                    reason: e.reason,
                    detail: detail.to_owned(),
                };
                return report.with_error(status, error);
            }
        };
        let supervisor = Arc::new(supervisor);
        let mut staged = Vec::with_capacity(capabilities.len());
        for c in &capabilities {
            let known = self.kinds().names().contains(&c.kind.as_str());
            let invalid = if capabilities.len() > crate::limits::MAX_CAPABILITIES {
                Some(format!(
                    "more than {} capabilities",
                    crate::limits::MAX_CAPABILITIES
                ))
            } else if !known || !self.can_isolate(&c.kind) {
                Some(format!(
                    "a capability of kind `{}`, which cannot be isolated (only kinds with a wire \
                     encoding can: {}); load the plugin in-process",
                    crate::text::printable(&c.kind),
                    self.wire_kinds().join(", ")
                ))
            } else {
                crate::limits::capability_name(c.name.as_bytes()).err()
            };
            if let Some(detail) = invalid {
                let error = PluginError::InvalidCapability {
                    path,
                    name: name.clone(),
                    detail,
                };
                return report.with_error(Status::Failed, error);
            }
            match self.kinds().wire(&c.kind) {
                Some((kind, wire)) => {
                    staged.push(wire::export_with(wire, &supervisor, kind, &c.name));
                }
                None => staged.extend(proxy::export(&supervisor, &c.kind, &c.name)),
            }
        }
        let plugin = crate::host::Committed {
            resolved,
            provenance: verified.provenance,
            differences: verified.differences,
            builtin: false,
        };
        let report = self.commit_plugin(report, plugin, staged, Some(supervisor.clone()));
        if report.status == Status::Loaded {
            self.isolation.supervisors.push(supervisor);
            self.isolation.sources.insert(name, report.path.clone());
        }
        report
    }
}

impl Host {
    /// How to start a worker for plugin `name` on the verified bytes in `file` (`shown`:
    /// the path it was verified at): in `chosen`, the worker binary the verification picked
    /// for a plugin built by another toolchain ([`Host::with_worker`]), else in the host's
    /// own worker; `Err` when this process cannot name a worker program.
    pub(crate) fn worker_spec(
        &self,
        name: &str,
        shown: &str,
        file: std::fs::File,
        chosen: Option<&Path>,
    ) -> Result<spawn::Spec, String> {
        let chosen = chosen.map(|path| (path.to_owned(), vec![OsString::from("__worker")]));
        let (program, args) = match chosen.as_ref().or(self.isolation.worker.as_ref()) {
            Some(worker) => worker.clone(),
            None => match std::env::current_exe() {
                Ok(exe) => (exe, vec![OsString::from("__worker")]),
                Err(e) => {
                    return Err(format!(
                        "plugin `{name}` is to run isolated, but this process cannot name its \
                         own executable to start a worker: {e}; set one with \
                         `Host::with_worker_command`"
                    ))
                }
            },
        };
        let policy = self.policy_for(name);
        let checks = CheckKind::ALL
            .iter()
            .filter(|c| c.adjustable())
            .map(|c| {
                let severity = match policy.severity(*c) {
                    Severity::Ignore => "ignore",
                    Severity::Warn => "warn",
                    Severity::Fail => "fail",
                };
                (c.as_str().to_owned(), severity.to_owned())
            })
            .collect();
        let load = plugin_protocol::Load {
            name: name.to_owned(),
            path: shown.to_owned(),
            file_fd: file.as_raw_fd() as u32,
            policy: policy.name().to_owned(),
            checks,
            config: self.config_for(name).to_owned(),
            max_log_level: crate::log_bridge::current_level() as u8,
        };
        Ok(spawn::Spec {
            plugin: name.into(),
            program,
            args,
            file: Arc::new(OwnedFd::from(file)),
            load,
            start_timeout: self.isolation.start_timeout,
        })
    }
}

fn fail(report: PluginReport, path: PathBuf, reason: ReasonCode, detail: String) -> PluginReport {
    report.with_error(
        Status::Failed,
        PluginError::Load {
            path,
            reason,
            detail,
        },
    )
}
