//! Isolation: a plugin in a worker process of its own, behind the same capability handles.
//!
//! This crate is a [`host::place::Placement`]: an application that isolates plugins adds
//! [`Isolation`] to its host ([`host::HostBuilder::placement`]); one that never does, does
//! not compile the shared-memory transport and the spawner.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let identity: host::HostIdentity = unimplemented!();
//! use plugin_isolate::{Isolation, Mode};
//! let isolation = Isolation::new().plugin("wc", Mode::Process);
//! let host = host::Host::builder(identity).placement(isolation).build();
//! # Ok(()) }
//! ```
//!
//! A plugin the host isolates ([`Isolation::plugin`], `isolation = "process"` in its
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
//! deadline, [`Isolation::call_timeout`]; the worker is killed), `protocol-error`; a worker
//! that fails the handshake is `handshake-failed`. The next call starts a new worker (after
//! a backoff from the second consecutive failure on); after [`MAX_FAILURES`] consecutive
//! failures the plugin is unregistered: its lookups fail with
//! [`host::LookupError::Unregistered`], and [`isolated`] says why.
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
//! Concurrency: a worker runs one call at a time. By default a plugin has one worker, so its
//! calls are served one at a time, in the order they take its lock. With
//! [`Isolation::workers`]`(n)` it has a pool of `n` worker slots: call `k` goes to slot
//! `k % n` (or to any other free slot with a running worker, else it waits for its own), so
//! up to `n` calls to one plugin run at once, each in a worker process of its own; the first
//! worker starts with the plugin, the others on their slot's first call. Each call has its
//! own deadline from the moment it is sent, each worker its own bounds; a worker that
//! crashes, times out or breaks a bound fails only its own call and is replaced on its
//! slot's next call; failures count for the plugin as a whole ([`MAX_FAILURES`] in a row
//! unregister it). Different isolated plugins run in parallel. A transform run over many
//! chunks with [`transform_chunks`] keeps two calls in flight to one worker (pipelined: the
//! worker computes a chunk while the host copies the next one in), each still a call with its
//! own deadline and bounds.
//!
//! The wire: [`plugin_protocol`] (no I/O, versioned apart from `plugin-api`). Only kinds with
//! a wire encoding can be isolated; the two built-in kinds have one (`command`: arguments as
//! strings in, UTF-8 text out; `transform`: bytes in, bytes out), and an application gives
//! its own kinds one with [`host::wire::WireEncoding`] and [`host::Kinds::with_wire`]. A plugin
//! that registers another kind fails to load isolated (`invalid-capability`).
//!
//! Reload: [`host::Host::reload`] replaces an isolated plugin's worker by one started on the
//! plugin's current file, verified again, without restarting the host; calls in flight finish
//! on the old worker and no call fails because of it (see [`host::ReloadError`]).
//!
//! Orphans: each worker gets `PR_SET_PDEATHSIG(SIGKILL)` (set by a long-lived spawner thread,
//! since Linux sends it when the *thread* that forked ends), and watches the host: through
//! the call channel (the host's pidfd, and the host's end being closed) for a version-2
//! worker, at end of file on its control socket for a version-1 one. So workers die with the
//! host; dropping the [`host::Host`] stops them gracefully (shutdown message, then `SIGKILL` after a
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RVec;
use host::place::{Placed, Placement, Refusal, Request, Running, Verified};
use host::{
    CheckKind, Host, PluginError, Policy, ReasonCode, Severity, Status, Verdict, WorkerChoice,
};
use plugin_api::provenance::Provenance;
use plugin_api::CallError;

mod bounds;
mod proxy;
mod reload;
// The shared-memory channel: the transport of isolated plugins' calls (protocol version 2).
pub mod shm;
mod skew;
mod spawn;
mod supervise;
mod transport;
mod tree;
pub mod worker;

/// Whether a plugin runs in-process or in a worker (the configuration's `isolation`).
pub use host::config::Isolation as Mode;
pub use skew::worker_file_name;
pub(crate) use skew::WorkerBinary;
pub use spawn::CallsSent;
pub(crate) use supervise::Supervisor;

/// The default deadline of a call into an isolated plugin.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a worker has to answer the handshake and load and register its plugin.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failures (crashes, timeouts, failed restarts) after which an isolated plugin
/// is unregistered.
pub const MAX_FAILURES: u32 = 3;

/// The isolation placement: which plugins run in a worker process, and how workers start.
/// Built once and handed to [`host::HostBuilder::placement`].
#[derive(Clone)]
pub struct Isolation {
    by_name: HashMap<String, Mode>,
    default: Mode,
    call_timeout: Duration,
    workers: usize,
    settings: Arc<Settings>,
}

/// What every worker of a host starts with, shared by the placement and its plugins'
/// supervisors (a reload starts a worker as the first load did).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) start_timeout: Duration,
    /// The worker command, when not this process's own executable with `__worker`.
    pub(crate) worker: Option<(PathBuf, Vec<OsString>)>,
    /// Worker binaries built with other toolchains ([`Isolation::worker`]).
    pub(crate) workers: Vec<WorkerBinary>,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::new()
    }
}

impl Isolation {
    /// Every plugin in-process unless set otherwise; the default deadlines; this process's
    /// own executable as the worker.
    pub fn new() -> Self {
        Isolation {
            by_name: HashMap::new(),
            default: Mode::InProcess,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            workers: 1,
            settings: Arc::new(Settings {
                start_timeout: DEFAULT_START_TIMEOUT,
                worker: None,
                workers: Vec::new(),
            }),
        }
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// Runs the plugin named `name` in-process or in a worker process of its own.
    pub fn plugin(mut self, name: impl Into<String>, mode: Mode) -> Self {
        self.by_name.insert(name.into(), mode);
        self
    }

    /// Runs every plugin this way, those with a setting of their own so far
    /// ([`Isolation::plugin`]) too (builtins always run in-process): a command line's "all"
    /// over what files said of single plugins.
    pub fn every_plugin(mut self, mode: Mode) -> Self {
        self.default = mode;
        for each in self.by_name.values_mut() {
            *each = mode;
        }
        self
    }

    /// Runs every plugin without a setting of its own ([`Isolation::plugin`]) this way
    /// (builtins always run in-process).
    pub fn default_mode(mut self, mode: Mode) -> Self {
        self.default = mode;
        self
    }

    /// Sets the deadline of each call into an isolated plugin ([`DEFAULT_CALL_TIMEOUT`]):
    /// past it the worker is killed and the call fails `plugin-timeout`.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Gives each isolated plugin a pool of `n` worker processes (at least 1, the default),
    /// so that up to `n` calls to one plugin run at once (see the crate documentation): for
    /// plugins called from several threads. Each worker costs a process and its memory.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Sets how long a worker may take to answer the handshake and to load and register its
    /// plugin ([`DEFAULT_START_TIMEOUT`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.settings().start_timeout = timeout;
        self
    }

    /// Sets the worker command: `program` run with `args`, then `--fd N` (the control
    /// socket). The default is this process's own executable with `__worker`, which is right
    /// for the `plugin-host` binary and for an application whose `main` calls
    /// [`worker::serve_if_worker`] first.
    pub fn worker_command(
        mut self,
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        let args = args.into_iter().map(Into::into).collect();
        self.settings().worker = Some((program.into(), args));
        self
    }

    /// Whether the plugin named `name` runs in a worker.
    pub fn isolates(&self, name: &str) -> bool {
        self.by_name.get(name).copied().unwrap_or(self.default) == Mode::Process
    }
}

/// An isolated plugin's state, as [`isolated`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatedPlugin {
    /// The plugin's name.
    pub name: String,
    /// Its worker's process id, while one runs.
    pub pid: Option<u32>,
    /// How many times its worker was started (the first start included).
    pub starts: u32,
    /// The calls its worker (the one of `pid`) was sent so far, by handle and by name: a
    /// worker of protocol version 3 or later gets its calls by handle, an older one by name.
    /// Zero while no worker runs.
    pub sent: CallsSent,
    /// Failures since the last successful call.
    pub consecutive_failures: u32,
    /// Set once it was unregistered: the last failure's reason code and the message.
    pub unregistered: Option<(ReasonCode, String)>,
}

/// The isolated plugins `host` loaded so far, with their workers' state.
pub fn isolated(host: &Host) -> Vec<IsolatedPlugin> {
    host.plugins()
        .iter()
        .filter_map(|p| p.running()?.as_any().downcast_ref::<Isolated>())
        .map(|i| i.supervisor.status())
        .collect()
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

/// Why [`transform_chunks`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// No transform of that name can be called (none registered, or its plugin was
    /// unregistered).
    #[error(transparent)]
    Lookup(#[from] host::LookupError),
    /// Chunk `index` (counted from 0) failed: every chunk before it was handed on, none after
    /// it was. For an isolated plugin, [`reason`] of `error` says whether its worker failed.
    #[error("chunk {index}: {error}")]
    Chunk {
        /// The chunk's position.
        index: usize,
        /// Its error.
        error: CallError,
    },
}

/// Runs the `transform` capability `name` of `host` over `chunks`, in order, handing each
/// chunk's output to `each` in the same order; returns the number of chunks done. A chunk is
/// any byte buffer: borrowed slices, or buffers the iterator fills as it goes (each is
/// dropped once it was sent, so the stream holds at most two at a time).
///
/// The result is what calling the transform's handle on each chunk in turn gives
/// (`registry().get::<TransformKind>(name)` and `apply`), and that is what this does for an
/// in-process plugin. For an isolated one it **pipelines**: up to two chunks are in flight to
/// the plugin's worker, which computes one while the host copies the next into its ring and
/// the output of the last out of it, so a stream of chunks costs the worker's time, not the
/// worker's time plus the copies. Each chunk is still a call of its own, with the plugin's
/// deadline ([`Isolation::call_timeout`], counted from when the worker can start on it) and
/// every bound of a call; a worker that crashes, hangs or breaks a bound mid-stream fails the
/// chunk it was on ([`ChunkError::Chunk`], its reason code as for a single call) and the later
/// chunks are not run — none is dropped silently. The stream holds one worker of the
/// plugin's pool ([`Isolation::workers`]) throughout.
pub fn transform_chunks<C: AsRef<[u8]>>(
    host: &Host,
    name: &str,
    chunks: impl IntoIterator<Item = C>,
    mut each: impl FnMut(&[u8]),
) -> Result<usize, ChunkError> {
    let transform = host.registry().get::<plugin_api::TransformKind>(name)?;
    let mut output = RVec::new();
    let mut chunks = chunks.into_iter();
    // Only the built-in proxy takes raw bytes (an application's own wire encoding of
    // `transform` is called through the handle, chunk by chunk).
    let proxied = host.kinds().wire("transform").is_none();
    let isolated = host
        .plugins()
        .iter()
        .filter(|_| proxied)
        .filter_map(|p| p.running()?.as_any().downcast_ref::<Isolated>())
        .find_map(|i| {
            let index = i
                .supervisor
                .registered()
                .iter()
                .position(|c| c.kind == "transform" && c.name == name)?;
            Some((&i.supervisor, index))
        });
    if let Some((supervisor, index)) = isolated {
        return supervisor
            .transform_stream(name, Some(index), &mut chunks, &mut output, &mut each)
            .map_err(|(index, error)| ChunkError::Chunk { index, error });
    }
    let mut done = 0;
    for (index, chunk) in chunks.enumerate() {
        output.clear();
        transform
            .apply(chunk.as_ref().into(), &mut output)
            .into_result()
            .map_err(|error| ChunkError::Chunk { index, error })?;
        each(&output);
        done += 1;
    }
    Ok(done)
}

/// An isolated plugin as its record keeps it: its supervisor, and how its workers start.
pub(crate) struct Isolated {
    pub(crate) supervisor: Arc<Supervisor>,
    pub(crate) settings: Arc<Settings>,
}

impl Running for Isolated {
    fn retired(&self) -> Option<(ReasonCode, String)> {
        self.supervisor.retired()
    }

    fn reload(
        &self,
        request: &Request<'_>,
        verified: Verified,
    ) -> Result<Vec<host::CapabilityInfo>, (ReasonCode, String)> {
        reload::reload(self, request, verified)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl host::wire::Channel for Supervisor {
    fn plugin(&self) -> &str {
        Supervisor::plugin(self)
    }

    fn call(
        &self,
        kind: &str,
        name: &str,
        request: &[u8],
        reply: &mut RVec<u8>,
    ) -> Result<(), CallError> {
        // An application's own kind: called by name (its wire encoding takes the name).
        let target = spawn::Target {
            kind,
            name,
            index: None,
        };
        Supervisor::call(self, target, spawn::Input::Bytes(request), reply)
    }
}

/// Whether capabilities of `kind` can be isolated: a built-in kind with its wire encoding,
/// or one the application gave one ([`host::Kinds::with_wire`]).
fn can_isolate(kinds: &host::Kinds, kind: &str) -> bool {
    kinds.wire(kind).is_some() || proxy::WIRE_KINDS.contains(&kind)
}

/// The kinds of this host that can be isolated, sorted.
fn wire_kinds(kinds: &host::Kinds) -> Vec<&'static str> {
    let mut names = kinds.names();
    names.retain(|k| can_isolate(kinds, k));
    names
}

impl Placement for Isolation {
    fn takes(&self, name: &str) -> bool {
        self.isolates(name)
    }

    fn rescue(
        &self,
        host: &Provenance,
        plugin: &Provenance,
        policy: &Policy,
        refused: CheckKind,
    ) -> Option<(WorkerChoice, Verdict)> {
        skew::pick_worker(&self.settings.workers, host, plugin, policy, refused)
    }

    fn hint(&self, host: &Provenance, plugin: &Provenance, policy: &Policy) -> String {
        skew::worker_hint(&self.settings.workers, host, plugin, policy)
    }

    /// Starts a worker for a verified plugin and returns proxies for its capabilities.
    fn place(&self, request: &Request<'_>, verified: Verified) -> Result<Placed, Refusal> {
        let (path, name) = (request.path, request.name);
        let shown = path.display().to_string();
        if let Some(choice) = request.worker {
            tracing::info!("plugin `{name}` {choice}");
        }
        let spec = spec(&self.settings, request, verified.into_file())
            .map_err(|detail| fail(request, ReasonCode::HandshakeFailed, detail))?;
        tracing::debug!("starting a worker for plugin `{name}` ({shown})");
        let (supervisor, capabilities) = Supervisor::start(spec, self.call_timeout, self.workers)
            .map_err(|e| {
            let status = match e.refused.as_deref() {
                Some("rejected") => Status::Rejected,
                _ => Status::Failed,
            };
            // The worker's own report names the file already.
            let prefix = format!("{shown}: ");
            let detail = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
            let error = PluginError::Load {
                path: path.to_owned(),
                reason: e.reason,
                detail: detail.to_owned(),
            };
            Refusal::new(status, error)
        })?;
        let supervisor = Arc::new(supervisor);
        let kinds = request.kinds;
        let mut exports = Vec::with_capacity(capabilities.len());
        for c in &capabilities {
            let known = kinds.names().contains(&c.kind.as_str());
            let invalid = if capabilities.len() > host::limits::MAX_CAPABILITIES {
                Some(format!(
                    "more than {} capabilities",
                    host::limits::MAX_CAPABILITIES
                ))
            } else if !known || !can_isolate(kinds, &c.kind) {
                Some(format!(
                    "a capability of kind `{}`, which cannot be isolated (only kinds with a wire \
                     encoding can: {}); load the plugin in-process",
                    host::text::printable(&c.kind),
                    wire_kinds(kinds).join(", ")
                ))
            } else {
                host::limits::capability_name(c.name.as_bytes()).err()
            };
            if let Some(detail) = invalid {
                let error = PluginError::InvalidCapability {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    detail,
                };
                return Err(error.into());
            }
            match kinds.wire(&c.kind) {
                Some((kind, wire)) => {
                    let channel: Arc<dyn host::wire::Channel> = supervisor.clone();
                    exports.push(host::wire::export_with(wire, channel, kind, &c.name));
                }
                None => exports.extend(proxy::export(&supervisor, &c.kind, &c.name)),
            }
        }
        let running = Isolated {
            supervisor,
            settings: self.settings.clone(),
        };
        Ok(Placed {
            exports,
            running: Some(Arc::new(running)),
        })
    }
}

/// How to start a worker for the plugin of `request` on the verified bytes in `file`: in the
/// worker binary the verification picked for a plugin built by another toolchain
/// ([`Isolation::worker`]), else in the host's own worker; `Err` when this process cannot
/// name a worker program.
pub(crate) fn spec(
    settings: &Settings,
    request: &Request<'_>,
    file: std::fs::File,
) -> Result<spawn::Spec, String> {
    let name = request.name;
    let chosen = request
        .worker
        .map(|w| (w.path.clone(), vec![OsString::from("__worker")]));
    let (program, args) = match chosen.as_ref().or(settings.worker.as_ref()) {
        Some(worker) => worker.clone(),
        None => match std::env::current_exe() {
            Ok(exe) => (exe, vec![OsString::from("__worker")]),
            Err(e) => {
                return Err(format!(
                    "plugin `{name}` is to run isolated, but this process cannot name its \
                     own executable to start a worker: {e}; set one with \
                     `Isolation::worker_command`"
                ))
            }
        },
    };
    let policy = request.policy;
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
        path: request.path.display().to_string(),
        file_fd: file.as_raw_fd() as u32,
        policy: policy.name().to_owned(),
        checks,
        config: request.config.to_owned(),
        max_log_level: host::log_bridge::current_level() as u8,
    };
    Ok(spawn::Spec {
        plugin: name.into(),
        program,
        args,
        file: Arc::new(OwnedFd::from(file)),
        load,
        start_timeout: settings.start_timeout,
    })
}

fn fail(request: &Request<'_>, reason: ReasonCode, detail: String) -> Refusal {
    PluginError::Load {
        path: request.path.to_owned(),
        reason,
        detail,
    }
    .into()
}
