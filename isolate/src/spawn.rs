//! Starting a worker: the process (from a long-lived spawner thread), its control socket,
//! its shared-memory call channel, the thread that reads its control frames, the thread that
//! reads its stderr, and the handshake; and one call's round trip ([`Worker::exchange`]).
//!
//! Two channels per worker:
//! - the **control socket** (a Unix socket pair, `--fd N`): handshake, `load` / `registered`,
//!   and the worker's log records, read by a reader thread. It is also the whole conversation
//!   with a worker that speaks only protocol version 1 (an older build): calls then go over it
//!   through the [`Sender`]/[`Receiver`] transport, as before.
//! - the **call channel** ([`super::shm`], `--shm M`, protocol version 2): `call`, `reply` and
//!   `shutdown`, moved by the calling thread itself (no reader thread, no hand-off between
//!   threads), with the encode and receive buffers kept in the [`Worker`] and reused, and
//!   replies read in place ([`plugin_protocol::decode_reply`]): no allocation per call on this
//!   side. The channel watches the worker's pidfd, so a worker that dies mid-call ends the wait
//!   with `PeerGone` within [`super::shm::LIVENESS_SLICE`]; it is then reaped for its status and
//!   stderr tail. The worker watches the host the same way (and keeps `PR_SET_PDEATHSIG`), and
//!   exits when the host's end of the channel is closed (dropped): that replaces the end of
//!   file on the control socket as the orphan guard, since a version-2 worker no longer reads
//!   the socket after loading.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use abi_stable::std_types::RStr;
use plugin_protocol::{
    decode_reply, decode_reply_head, encode, encode_call_args_to, encode_call_bytes_head_to,
    Borrowed, Capability, Load, Message, MAX_FRAME_LEN, PREFIX_LEN, REPLY_HEAD_LEN,
};

use super::bounds::{self, Bounds, MAX_LOG_TEXT, MAX_QUEUED, MAX_QUEUED_BYTES};
use super::shm::{self, ByteSink};
use super::transport::{Receiver, RecvError, Sender, SocketReceiver, SocketSender};
use host::ReasonCode;

mod call;
mod handshake;

use handshake::handshake;

/// The most stderr lines kept for crash reports.
const TAIL_LINES: usize = 12;
/// The most bytes of one stderr line kept.
const TAIL_LINE_BYTES: usize = 400;

/// What the reader thread hands to the caller waiting on the worker.
pub(crate) enum Event {
    /// A message other than a log record.
    Message(Message),
    /// The stream ended.
    Closed,
    /// The worker sent bytes that are not a valid frame, or reading failed.
    Broken(String),
}

/// The last lines a worker wrote to stderr.
#[derive(Default)]
pub(crate) struct Tail {
    lines: Mutex<VecDeque<String>>,
    done: Mutex<bool>,
    done_changed: std::sync::Condvar,
}

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The tail as one line (`a | b | c`), waiting up to `wait` for the stream's end (a
    /// crash report wants the dying words).
    fn text(&self, wait: Duration) -> String {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .done_changed
            .wait_timeout_while(done, wait, |done| !*done);
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// The tail as a clause of a message: `its stderr ended with: …`, or `it wrote nothing
    /// to stderr` (waiting as [`Tail::text`] does).
    pub(crate) fn clause(&self, wait: Duration) -> String {
        let tail = self.text(wait);
        if tail.is_empty() {
            "it wrote nothing to stderr".to_owned()
        } else {
            format!("its stderr ended with: {tail}")
        }
    }

    /// The tail to append to a message: `; its stderr ended with: …`, or nothing.
    pub(crate) fn suffix(&self, wait: Duration) -> String {
        let tail = self.text(wait);
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ended with: {tail}")
        }
    }

    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.done_changed.notify_all();
    }
}

/// Why a message was not sent.
pub(crate) enum SendError {
    /// Larger than a frame may be: nothing was sent, the worker is fine.
    TooLarge(String),
    /// Writing failed: the worker is most likely gone.
    Io(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TooLarge(m) | SendError::Io(m) => f.write_str(m),
        }
    }
}

/// The capacity of each ring of a worker's call channel: a 256 KiB transform chunk and its
/// reply fit whole; larger messages stream through.
pub(crate) const RING_CAPACITY: usize = 1 << 20;

/// The protocol version from which calls go over the shared-memory channel.
const SHM_VERSION: u16 = 2;
/// The protocol version from which calls name their capability by handle.
const HANDLE_VERSION: u16 = 3;

/// A running worker.
pub(crate) struct Worker {
    child: Child,
    pub(crate) pid: u32,
    /// The control socket's sending half (and the calls' with a version-1 worker).
    pub(crate) sender: Box<dyn Sender>,
    /// What the control socket's reader thread hands over.
    /// What the reader thread queued, each with its frame's bytes (see [`Bounds::admit`]).
    pub(crate) events: mpsc::Receiver<(Event, usize)>,
    pub(crate) tail: Arc<Tail>,
    /// The bound the worker broke, if it did (see [`super::bounds`]).
    pub(crate) bounds: Arc<Bounds>,
    /// Set once the worker was reaped (only [`Worker::kill`] and [`Worker::death`] reap it,
    /// after killing its group): its status, if waiting for it worked.
    reaped: Option<Option<std::process::ExitStatus>>,
    /// A reusable buffer for encoding frames.
    pub(crate) frame: Vec<u8>,
    /// The call channel: during the handshake, offered; after it, `Some` if the worker speaks
    /// protocol version 2 (else calls go over the control socket).
    pub(crate) shm: Option<shm::Channel>,
    /// A reusable buffer for receiving frames from the call channel.
    pub(crate) rx: Vec<u8>,
    /// The protocol version chosen in the handshake (0 before it).
    pub(crate) version: u16,
    /// For each capability the host holds a proxy for (the supervisor's `registered`, by
    /// position), its handle in this worker (its position in this worker's `registered`
    /// answer), when this worker takes calls by handle ([`Worker::resolve`]).
    handles: Vec<Option<u32>>,
    /// Calls sent over the call channel whose replies were not read yet.
    pub(crate) in_flight: usize,
    /// The calls sent to this worker so far by handle and by kind and name, counted where
    /// each call's frame is encoded ([`Worker::exchange`], [`Worker::send_call`]); reported
    /// by [`crate::isolated`].
    pub(crate) sent: CallsSent,
}

/// How many calls a worker was sent by handle (`call-handle`, protocol version 3) and by kind
/// and name (`call`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallsSent {
    /// Calls by handle.
    pub by_handle: u64,
    /// Calls by kind and name.
    pub by_name: u64,
}

/// The capability a call is for: its kind and name, and its position in the supervisor's
/// list of proxied capabilities, if it has one (then the call goes by handle when the worker
/// takes handles).
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) kind: &'a str,
    pub(crate) name: &'a str,
    pub(crate) index: Option<usize>,
}

/// A call's arguments, borrowed from the caller.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// A `command`'s arguments.
    Args(&'a [RStr<'a>]),
    /// A `transform`'s input.
    Bytes(&'a [u8]),
}

/// How one round trip ended ([`Worker::exchange`]).
pub(crate) enum Exchange {
    /// The worker's reply: the call succeeded (its output was appended to the caller's
    /// buffer), or the plugin's failure.
    Reply(Result<(), plugin_protocol::CallFailure>),
    /// The call is larger than a frame may be: nothing was sent, the worker is fine.
    TooLarge(String),
    /// The worker answered with another message (its name).
    Other(&'static str),
    /// Garbage: a frame that does not decode, or a corrupt shared channel.
    Broken(String),
    /// The worker is gone (it ended, or its channel was closed).
    Closed,
    /// No reply before the deadline.
    Timeout,
}

/// How to start a worker for one plugin.
pub(crate) struct Spec {
    pub(crate) plugin: Arc<str>,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// The verified bytes, inherited by each worker.
    pub(crate) file: Arc<OwnedFd>,
    pub(crate) load: Load,
    pub(crate) start_timeout: Duration,
}

/// Why a worker could not be started.
pub(crate) struct StartError {
    pub(crate) reason: ReasonCode,
    pub(crate) message: String,
    /// Its status and message when the worker refused the plugin (`rejected`/`failed`).
    pub(crate) refused: Option<String>,
}

impl StartError {
    fn new(reason: ReasonCode, message: String) -> Self {
        StartError {
            reason,
            message,
            refused: None,
        }
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from one long-lived thread: `PR_SET_PDEATHSIG` fires when the thread
/// that forked the child ends, not the process, so a worker spawned from a caller's thread
/// would die with that thread.
fn spawn_from_spawner(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("plugin-worker-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let spawned = command.spawn();
                    // Closes this side's copies of what the child inherited before answering.
                    drop(command);
                    let _ = reply.send(spawned);
                }
            })
            .expect("start the worker spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    let sent = spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply));
    if sent.is_err() {
        return Err(std::io::Error::other("the worker spawner thread is gone"));
    }
    answer
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the worker spawner thread is gone")))
}

/// Starts a worker, shakes hands and has it load the plugin: the worker and the
/// capabilities it registered.
pub(crate) fn start(spec: &Spec) -> Result<(Worker, Vec<Capability>), StartError> {
    let plugin = &spec.plugin;
    let deadline = Instant::now() + spec.start_timeout;
    let io = |what: &str, e: std::io::Error| {
        StartError::new(
            ReasonCode::HandshakeFailed,
            format!("plugin `{plugin}`: {what}: {e}"),
        )
    };
    let (ours, theirs) = UnixStream::pair().map_err(|e| io("cannot make a socket pair", e))?;
    let mut command = Command::new(&spec.program);
    // The two descriptors the worker inherits (close-on-exec in the host); the verified
    // file's number is the one `spec.load` names.
    let their_fd = shm::pass_fd(&mut command, OwnedFd::from(theirs));
    shm::pass_fd(&mut command, spec.file.clone());
    command
        .args(&spec.args)
        .arg("--fd")
        .arg(their_fd.to_string());
    // The call channel. Without one (no memfd here), the worker is offered version 1 only
    // and calls go over the control socket.
    let mut channel = match shm::Channel::create(RING_CAPACITY) {
        Ok((mut channel, fd)) => {
            channel.set_max_message(plugin_protocol::MAX_FRAME_LEN + plugin_protocol::PREFIX_LEN);
            let raw = shm::pass_fd(&mut command, fd);
            command.arg("--shm").arg(raw.to_string());
            Some(channel)
        }
        Err(e) => {
            tracing::debug!("plugin `{plugin}`: no shared-memory call channel ({e}); calls go over the control socket");
            None
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, and only makes
    // async-signal-safe system calls (setpgid, prctl, getppid, dup2) on descriptors that are
    // open in the child; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            // A process group of its own, killed whole with the worker (see `tree`).
            super::tree::own_group()?;
            // Die with the host (with the spawner thread, which lives as long as the process).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The host died before the line above: nobody would ever kill this worker.
            // (An errno, not a message: nothing may allocate between fork and exec.)
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Whatever the plugin prints to stdout goes where its stderr goes: to the host's log.
            if libc::dup2(2, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = spawn_from_spawner(command).map_err(|e| {
        io(
            &format!("cannot start the worker `{}`", spec.program.display()),
            e,
        )
    })?;
    let pid = child.id();
    let bounds = Arc::new(Bounds::of(pid));
    // Our own unwaited child: its pid cannot have been reused yet.
    if let Some(c) = &mut channel {
        if let Err(e) = c.watch_pid(pid) {
            tracing::debug!("plugin `{plugin}`: cannot watch the worker's pidfd ({e}); calls go over the control socket");
            channel = None;
        }
    }
    let tail = Arc::new(Tail::default());
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        let bounds = bounds.clone();
        let span = host::log_bridge::span_for(plugin);
        let _ = std::thread::Builder::new()
            .name(format!("plugin-stderr-{plugin}"))
            .spawn(move || {
                bounds::read_lines(stderr, &bounds, |line| {
                    let text = host::text::lossy(line);
                    let text = text.trim_end();
                    if text.is_empty() {
                        return;
                    }
                    host::log_bridge::emit(
                        &span,
                        plugin_api::logger::LogLevel::Info,
                        "stderr",
                        text,
                    );
                    tail.push(host::text::shown(text, TAIL_LINE_BYTES));
                });
                tail.finish();
            });
    } else {
        tail.finish();
    }
    let reader = match ours.try_clone() {
        Ok(r) => r,
        Err(e) => {
            super::tree::kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(io("cannot clone the socket", e));
        }
    };
    // Bounded in messages here and in bytes by `bounds`: a worker has at most one answer
    // outstanding.
    let (events_tx, events) = mpsc::sync_channel(MAX_QUEUED);
    {
        let span = host::log_bridge::span_for(plugin);
        let bounds = bounds.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("plugin-reader-{plugin}"))
            .spawn(move || read_events(SocketReceiver::new(reader), events_tx, &bounds, span));
        if let Err(e) = spawned {
            super::tree::kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(io("cannot start the reader thread", e));
        }
    }
    let mut worker = Worker {
        child,
        pid,
        sender: Box::new(SocketSender(ours)),
        events,
        tail,
        bounds,
        reaped: None,
        frame: Vec::new(),
        shm: channel,
        rx: Vec::new(),
        version: 0,
        handles: Vec::new(),
        in_flight: 0,
        sent: CallsSent::default(),
    };
    match handshake(&mut worker, spec, deadline) {
        Ok(capabilities) => Ok((worker, capabilities)),
        Err(e) => {
            worker.kill();
            Err(e)
        }
    }
}

/// The reader thread: log records go to the host's log at once (cut to [`MAX_LOG_TEXT`]),
/// everything else to whoever waits on the worker, at most [`MAX_QUEUED`] messages and
/// [`MAX_QUEUED_BYTES`] bytes at a time (more break a bound, see [`Bounds::admit`]).
fn read_events(
    mut receiver: impl Receiver,
    events: mpsc::SyncSender<(Event, usize)>,
    bounds: &Bounds,
    span: tracing::Span,
) {
    loop {
        let (event, len) = match receiver.recv_sized() {
            Ok(Some((
                Message::Log {
                    level,
                    target,
                    message,
                },
                _,
            ))) => {
                let level = host::log_bridge::level_numbered(level as u8);
                let target = bounds::cut(&target, MAX_LOG_TEXT);
                let message = bounds::cut(&message, MAX_LOG_TEXT);
                host::log_bridge::emit(&span, level, &target, &message);
                continue;
            }
            Ok(Some((message, len))) => {
                let alone = matches!(message, Message::Reply { .. });
                if !bounds.admit(len, alone) {
                    return bounds.break_with(format!(
                        "sent control messages that were not asked for of more than \
                         {MAX_QUEUED_BYTES} bytes in all (the limit of its queue; the last, a \
                         {} message, of {len} bytes)",
                        message.name()
                    ));
                }
                (Event::Message(message), len)
            }
            Ok(None) => (Event::Closed, 0),
            Err(RecvError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                (Event::Closed, 0)
            }
            Err(e) => (Event::Broken(e.to_string()), 0),
        };
        let last = !matches!(event, Event::Message(_));
        match events.try_send((event, len)) {
            Ok(()) if !last => {}
            Err(mpsc::TrySendError::Full(_)) => {
                return bounds.break_with(format!(
                    "sent more than {MAX_QUEUED} control messages that were not asked for (the \
                     limit of its queue)"
                ))
            }
            // The end of the stream when the queue is full: the caller sees the worker gone.
            _ => return,
        }
    }
}

/// How a process ended, in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGKILL => "SIGKILL",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGTERM => "SIGTERM",
            libc::SIGTRAP => "SIGTRAP",
            _ => "signal",
        };
        format!("it was killed by signal {signal} ({name})")
    } else {
        match status.code() {
            Some(code) => format!("it exited with status {code}"),
            None => "it ended".to_owned(),
        }
    }
}

/// Waits for the next message (log records are handled by the reader thread) until
/// `deadline`.
pub(crate) fn next(worker: &Worker, deadline: Instant) -> Option<Event> {
    let left = deadline.saturating_duration_since(Instant::now());
    match worker.events.recv_timeout(left) {
        Ok((event, len)) => {
            worker.bounds.taken(len);
            Some(event)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => Some(Event::Closed),
    }
}
