//! The worker side: the body of `plugin-host __worker --fd N [--shm M]`.
//!
//! An application that isolates plugins runs the same in its own `main`, before anything
//! else, so that its binary can serve as its workers (the host starts them as
//! `<this executable> __worker --fd N`, see [`crate::Isolation::worker_command`]):
//!
//! ```ignore
//! if let Some(code) = plugin_isolate::worker::serve_if_worker(plugin_api::provenance_blob!()) {
//!     return code;
//! }
//! ```
//!
//! The worker answers the handshake, then verifies, loads and registers the one plugin the
//! host names, exactly as [`Host::load`] does, under the policy the host sends, with the
//! host's configuration string; then it serves calls, one at a time, until the host says
//! `shutdown` or goes away. The plugin's log records go to the host as log messages on the
//! control socket; anything written to stderr (or stdout) is read by the host and logged
//! under the plugin's name.
//!
//! With `--shm M` (the host's shared-memory call channel, [`super::shm`]) the worker offers
//! protocol version 2: calls, replies and `shutdown` then go over the channel, and the worker
//! ends when the host closes its end or its process ends (the channel watches the parent's
//! pidfd). Without it, or with a host that speaks only version 1, everything goes over the
//! control socket, which ends the worker at end of file.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use abi_stable::std_types::{RSlice, RStr, RVec};
use plugin_api::{CallError, CallErrorKind, CapabilityKind, CommandKind, TransformKind};
use plugin_protocol::{
    decode_call, encode, encode_reply, encode_reply_head, negotiate, Borrowed, CallFailure,
    Capability, Level, Load, Message, Payload, PayloadRef, Target, COOKIE,
};

use super::shm;
use super::transport::{Receiver, Sender, SocketReceiver, SocketSender};
use host::{CheckKind, Host, HostIdentity, Kinds, PluginSettings, Policy, Severity, Status};

/// Runs the worker when the process's arguments are `__worker --fd N` (as the host starts
/// it): `Some(exit code)` then, `None` for any other arguments. `blob` is the application's
/// provenance (`plugin_api::provenance_blob!()`), the identity plugins are judged against.
/// Plugins may register the built-in kinds ([`Kinds::demo`]); an application with kinds of
/// its own uses [`serve_if_worker_with`].
pub fn serve_if_worker(blob: &[u8]) -> Option<ExitCode> {
    serve_if_worker_with(blob, Kinds::demo())
}

/// [`serve_if_worker`] for an application's own `kinds`: the same as its host's, with the
/// wire encodings of the kinds it isolates ([`Kinds::with_wire`]).
pub fn serve_if_worker_with(blob: &[u8], kinds: Kinds) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("__worker") {
        return None;
    }
    let fd = match args.get(1..3) {
        Some([flag, n]) if flag == "--fd" => n.parse().ok(),
        _ => None,
    };
    let shm = match args.get(3..5) {
        Some([flag, n]) if flag == "--shm" => n.parse().ok(),
        _ => None,
    };
    let Some(fd) = fd else {
        eprintln!("usage: __worker --fd N [--shm M]");
        return Some(ExitCode::from(2));
    };
    Some(match HostIdentity::from_blob(blob) {
        Ok(identity) => serve_with(identity, kinds, fd, shm),
        Err(e) => {
            eprintln!("worker: the application's provenance is unreadable: {e}");
            ExitCode::from(2)
        }
    })
}

/// Serves the host on control socket `fd` (inherited from the host), judging the plugin
/// against `identity`, with calls over that socket (protocol version 1). Returns when the host
/// says `shutdown` or goes away.
pub fn serve(identity: HostIdentity, fd: RawFd) -> ExitCode {
    serve_with_channel(identity, fd, None)
}

/// Serves the host as [`serve`] does, with the host's shared-memory call channel `shm` (the
/// descriptor after `--shm`, inherited from the host) if it gave one: calls then go over it.
pub fn serve_with_channel(identity: HostIdentity, fd: RawFd, shm: Option<RawFd>) -> ExitCode {
    serve_with(identity, Kinds::demo(), fd, shm)
}

/// Serves the host as [`serve_with_channel`] does, with plugins registering `kinds` (an
/// application's own, see [`serve_if_worker_with`]).
pub fn serve_with(identity: HostIdentity, kinds: Kinds, fd: RawFd, shm: Option<RawFd>) -> ExitCode {
    // The descriptors named on the command line are taken as owned below: each must be open,
    // not one of the standard three, and not the other (owned twice, it would be closed twice).
    if let Err(why) = inherited(fd, shm) {
        eprintln!("worker: {why}");
        return ExitCode::from(2);
    }
    // Before any plugin code runs: whatever the plugin starts dies with this worker, even
    // when the host is killed (see `tree`).
    if let Err(e) = super::tree::start_guard() {
        eprintln!("worker: cannot start the guard of its process group ({e}); a process the plugin starts may outlive the host");
    }
    // Every descriptor the worker inherited or holds (the control socket, the call channel,
    // the plugin file, whatever the host's process had open) stays open here but is not
    // handed on to the processes the plugin starts.
    if let Err(e) = close_on_exec_from(3) {
        eprintln!("worker: cannot mark its descriptors close-on-exec ({e}); a process the plugin starts may inherit them");
    }
    // A channel that cannot be mapped is no reason to fail: the worker offers version 1 only.
    let channel = shm.and_then(|raw| {
        // SAFETY: `raw` is the descriptor the host passed on the command line (`--shm M`),
        // inherited open and owned by nobody else in this process; it is taken once, here.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut channel = match shm::Channel::from_fd(owned) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("worker: cannot map the call channel ({e}); calls go over the socket");
                return None;
            }
        };
        channel.set_max_message(plugin_protocol::MAX_FRAME_LEN + plugin_protocol::PREFIX_LEN);
        // The host is our parent (checked: a re-parented worker's host is gone). Watching it
        // ends every wait with `PeerGone` within a slice once it dies.
        // SAFETY: `getppid` has no arguments and cannot fail.
        let parent = unsafe { libc::getppid() };
        if parent <= 1 || channel.watch_pid(parent as u32).is_err() {
            eprintln!("worker: cannot watch the host process; calls go over the socket");
            return None;
        }
        Some(channel)
    });
    // SAFETY: `fd` is the control socket the host passed on the command line (`--fd N`),
    // inherited open and owned by nobody else in this process; it is taken once, here.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let sender = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("worker: cannot use descriptor {fd}: {e}");
            return ExitCode::from(2);
        }
    };
    let sender: Arc<Mutex<Box<dyn Sender>>> = Arc::new(Mutex::new(Box::new(SocketSender(sender))));
    let mut receiver = SocketReceiver::new(stream);
    match run(identity, kinds, &sender, &mut receiver, channel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::from(2)
        }
    }
}

/// Sets `FD_CLOEXEC` on every open descriptor from `first` on: `close_range` with
/// `CLOSE_RANGE_CLOEXEC` (Linux 5.11), else each descriptor listed in `/proc/self/fd`.
fn close_on_exec_from(first: RawFd) -> std::io::Result<()> {
    // SAFETY: `close_range` takes no pointers; with `CLOSE_RANGE_CLOEXEC` it closes nothing,
    // it only marks descriptors. The result is checked.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    mark_listed_from(first)
}

/// [`close_on_exec_from`] without `close_range`: each descriptor `/proc/self/fd` lists.
fn mark_listed_from(first: RawFd) -> std::io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: `fcntl` on a descriptor number takes no pointers; one that was closed
        // meanwhile (the directory listing's own) is `EBADF`, skipped.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

fn send(sender: &Mutex<Box<dyn Sender>>, message: &Message) -> Result<(), String> {
    let mut frame = Vec::new();
    encode(message, &mut frame);
    let mut sender = sender.lock().unwrap_or_else(|p| p.into_inner());
    sender
        .send(&frame, None)
        .map_err(|e| format!("sending {} to the host failed: {e}", message.name()))
}

fn recv(receiver: &mut dyn Receiver) -> Result<Option<Message>, String> {
    receiver.recv().map_err(|e| format!("from the host: {e}"))
}

fn run(
    identity: HostIdentity,
    kinds: Kinds,
    sender: &Arc<Mutex<Box<dyn Sender>>>,
    receiver: &mut dyn Receiver,
    mut channel: Option<shm::Channel>,
) -> Result<(), String> {
    // 1. The handshake.
    let Some(Message::Hello {
        cookie,
        min_version,
        max_version,
    }) = recv(receiver)?
    else {
        return Err("the host did not start with a hello".into());
    };
    if cookie != COOKIE {
        return Err("the host sent another cookie".into());
    }
    // Version 2 needs the call channel.
    let ours = if channel.is_some() {
        max_version
    } else {
        max_version.min(1)
    };
    let Some(version) = negotiate(min_version, ours) else {
        let message = format!(
            "no common protocol version: the host speaks {min_version}..={max_version}, this \
             worker {}..={}",
            plugin_protocol::PROTOCOL_VERSION_MIN,
            plugin_protocol::PROTOCOL_VERSION
        );
        let refused = Message::Refused {
            status: "failed".into(),
            reason: host::ReasonCode::HandshakeFailed.as_str().into(),
            message: message.clone(),
        };
        send(sender, &refused)?;
        return Err(message);
    };
    let welcome = Message::Welcome {
        cookie: COOKIE,
        version,
        pid: std::process::id(),
    };
    send(sender, &welcome)?;
    if version < 2 {
        channel = None;
    }
    if let Some(channel) = &mut channel {
        // Proof that this worker mapped the channel.
        let mut frame = Vec::new();
        encode(&welcome, &mut frame);
        channel
            .send(&frame, None)
            .map_err(|e| format!("sending welcome on the call channel failed: {e}"))?;
    }
    // 2. The plugin.
    let Some(Message::Load(load)) = recv(receiver)? else {
        return Err("the host did not ask for a plugin".into());
    };
    let forward = sender.clone();
    let max_level = host::log_bridge::level_numbered(load.max_log_level);
    host::log_bridge::forward_records_to(max_level, move |level, target, message| {
        // The protocol numbers levels as `LogLevel` does; `Off` (0) has no record.
        let Some(level) = Level::from_u8(level as u8) else {
            return;
        };
        let record = Message::Log {
            level,
            target: host::text::bounded(target, plugin_protocol::MAX_NAME_LEN / 2).into_owned(),
            message: message.to_owned(),
        };
        let _ = send(&forward, &record);
    });
    let (host, answer) = load_plugin(identity, kinds, &load);
    send(sender, &answer)?;
    let Message::Registered { capabilities, .. } = &answer else {
        return Ok(());
    };
    // 3. Calls, one at a time.
    if let Some(channel) = channel {
        return serve_calls(&host, capabilities, channel);
    }
    while let Some(message) = recv(receiver)? {
        match message {
            Message::Call {
                id,
                kind,
                name,
                payload,
            } => {
                let mut output = RVec::new();
                let result = match &payload {
                    Payload::Args(args) => {
                        let args: Vec<RStr<'_>> = args.iter().map(|a| a.as_str().into()).collect();
                        call(&host, &kind, &name, Input::Args(&args), &mut output)
                    }
                    Payload::Bytes(bytes) => {
                        call(&host, &kind, &name, Input::Bytes(bytes), &mut output)
                    }
                };
                let result = result.map(|()| output.into_vec());
                send(sender, &Message::Reply { id, result })?;
            }
            Message::Shutdown => break,
            // Handles are for the call channel (version 3); a version-1 host never sends one.
            other => return Err(format!("unexpected {} message from the host", other.name())),
        }
    }
    Ok(())
}

/// Verifies, loads and registers the plugin as the host would in-process: the host (kept
/// for the calls) and the answer for the host.
fn load_plugin(identity: HostIdentity, kinds: Kinds, load: &Load) -> (Host, Message) {
    let mut policy =
        Policy::preset(load.policy.split('+').next().unwrap_or("default")).unwrap_or_default();
    for (check, severity) in &load.checks {
        if let (Some(check), Some(severity)) = (CheckKind::parse(check), Severity::parse(severity))
        {
            if policy.severity(check) != severity {
                let _ = policy.set(check, severity);
            }
        }
    }
    // No placement out of process: the worker runs its plugin in-process, and its refusals
    // suggest no worker (that is the other host's business).
    let mut host = Host::builder(identity)
        .kinds(kinds)
        .policy(policy)
        .plugin(&load.name, PluginSettings::new().config(&load.config))
        .build();
    let fd_path = format!("/proc/self/fd/{}", load.file_fd);
    let report = host.load(&PathBuf::from(&fd_path));
    // Messages name the file as the host knows it, not the inherited descriptor.
    let message = report
        .message
        .as_deref()
        .unwrap_or_default()
        .replace(&fd_path, &load.path);
    let answer = match (report.status, report.name.as_deref()) {
        (Status::Loaded, Some(name)) if name == load.name => Message::Registered {
            name: name.to_owned(),
            version: report.version.clone().unwrap_or_default(),
            capabilities: report
                .capabilities
                .iter()
                .map(|c| Capability {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                })
                .collect(),
        },
        (Status::Loaded, name) => Message::Refused {
            status: Status::Rejected.as_str().into(),
            reason: host::ReasonCode::NameMismatch.as_str().into(),
            message: format!(
                "{}: the worker was handed plugin `{}`, not `{}`",
                load.path,
                name.unwrap_or("?"),
                load.name
            ),
        },
        (status, _) => Message::Refused {
            status: status.as_str().into(),
            reason: report
                .reason
                .unwrap_or(host::ReasonCode::LoadFailed)
                .as_str()
                .into(),
            // Within what the host queues for it (see `bounds::MAX_QUEUED_BYTES`).
            message: super::bounds::cut(&message, super::bounds::MAX_LOG_TEXT).into_owned(),
        },
    };
    (host, answer)
}

/// A capability resolved once, for calls by handle (protocol version 3): handle `i` is the
/// `i`th capability of the worker's `registered` answer.
enum Resolved<'h> {
    Command(&'h <CommandKind as CapabilityKind>::Object),
    Transform(&'h <TransformKind as CapabilityKind>::Object),
    /// Called by kind and name: a kind with the application's own wire encoding (which takes
    /// the name), or one that did not resolve (the call then fails as a call by name would).
    Named(&'h Capability),
}

/// The handles of `capabilities`, resolved in `host`'s registry once.
fn resolve<'h>(host: &'h Host, capabilities: &'h [Capability]) -> Vec<Resolved<'h>> {
    capabilities
        .iter()
        .map(|c| {
            if host.kinds().wire(&c.kind).is_some() {
                return Resolved::Named(c);
            }
            let registry = host.registry();
            match c.kind.as_str() {
                "command" => registry
                    .get::<CommandKind>(&c.name)
                    .map_or(Resolved::Named(c), Resolved::Command),
                "transform" => registry
                    .get::<TransformKind>(&c.name)
                    .map_or(Resolved::Named(c), Resolved::Transform),
                _ => Resolved::Named(c),
            }
        })
        .collect()
}

/// Calls the capability of `handle` (see [`Resolved`]): as [`call`] does by name, without
/// looking it up.
fn call_handle(
    host: &Host,
    handles: &[Resolved<'_>],
    handle: u32,
    input: Input<'_>,
    output: &mut RVec<u8>,
) -> Result<(), CallFailure> {
    let failure = |e: CallError| CallFailure {
        panicked: e.kind == CallErrorKind::Panicked,
        message: e.message_lossy().into_owned(),
    };
    match (handles.get(handle as usize), input) {
        (Some(Resolved::Command(command)), Input::Args(args)) => command
            .call(RSlice::from_slice(args))
            .into_result()
            .map(|out| output.extend_from_copy_slice(out.as_bytes()))
            .map_err(failure),
        (Some(Resolved::Transform(transform)), Input::Bytes(input)) => transform
            .apply(RSlice::from_slice(input), output)
            .into_result()
            .map_err(failure),
        (Some(Resolved::Named(c)), input) => call(host, &c.kind, &c.name, input, output),
        (Some(Resolved::Command(_) | Resolved::Transform(_)), _) => Err(CallFailure {
            panicked: false,
            message: format!("the worker cannot call capability {handle} with these arguments"),
        }),
        (None, _) => Err(CallFailure {
            panicked: false,
            message: format!(
                "the worker has no capability {handle} (its plugin registered {})",
                handles.len()
            ),
        }),
    }
}

/// Serves calls from the shared-memory channel until `shutdown`, or until the host closes its
/// end or dies. A call is read in place in the channel when it lies there in one piece, and a
/// transform's output goes from its buffer straight into the channel; the buffers are reused
/// from call to call. A call by handle (version 3) finds its capability in a table resolved
/// once, here.
fn serve_calls(
    host: &Host,
    capabilities: &[Capability],
    mut channel: shm::Channel,
) -> Result<(), String> {
    let handles = resolve(host, capabilities);
    let mut rx = Vec::new();
    let mut head = Vec::new();
    let mut output = RVec::new();
    loop {
        head.clear();
        output.clear();
        let served = channel.recv_in_place(&mut rx, None, |message| {
            let request = match decode_call(message) {
                Ok((_, used)) if used != message.len() => {
                    return Err("from the host: bytes after the call in its message".into())
                }
                Ok((Borrowed::Expected(request), _)) => request,
                Ok((Borrowed::Other(Message::Shutdown), _)) => return Ok(None),
                Ok((Borrowed::Other(other), _)) => {
                    return Err(format!("unexpected {} message from the host", other.name()))
                }
                Err(e) => return Err(format!("from the host: {e}")),
            };
            let mut call_with = |input: Input<'_>| match request.target {
                Target::Handle(handle) => call_handle(host, &handles, handle, input, &mut output),
                Target::Named { kind, name } => call(host, kind, name, input, &mut output),
            };
            let result = match request.payload {
                PayloadRef::Bytes(bytes) => call_with(Input::Bytes(bytes)),
                p @ PayloadRef::Args { count, .. } if count <= ARGS_ON_STACK => {
                    // Up to a few arguments without allocating.
                    let mut args = [RStr::from(""); ARGS_ON_STACK];
                    for (slot, arg) in args.iter_mut().zip(p.args()) {
                        *slot = RStr::from(arg);
                    }
                    call_with(Input::Args(&args[..count]))
                }
                p @ PayloadRef::Args { .. } => {
                    let args: Vec<RStr<'_>> = p.args().map(RStr::from).collect();
                    call_with(Input::Args(&args))
                }
            };
            // An output the protocol cannot carry fails the call, not the worker.
            let limit = plugin_protocol::MAX_FRAME_LEN
                - (plugin_protocol::REPLY_HEAD_LEN - plugin_protocol::PREFIX_LEN);
            let result = match result {
                Ok(()) if output.len() > limit => Err(CallFailure {
                    panicked: false,
                    message: format!(
                        "its output ({} bytes) is larger than the protocol's limit of {limit} \
                         bytes for an isolated plugin; call it with less input at a time",
                        output.len()
                    ),
                }),
                other => other,
            };
            match &result {
                Ok(()) => encode_reply_head(request.id, output.len(), &mut head),
                Err(f) => encode_reply(request.id, Err((f.panicked, &f.message)), &mut head),
            }
            Ok(Some(result.is_ok()))
        });
        let succeeded = match served {
            Ok(Ok(Some(succeeded))) => succeeded,
            Ok(Ok(None)) | Err(shm::RecvError::PeerGone) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("from the host: {e}")),
        };
        // The reply: its head, then the output (sent from where the plugin wrote it).
        let payload: &[u8] = if succeeded { &output } else { &[] };
        match channel.send_parts(&[&head, payload], None) {
            Ok(()) => {}
            Err(shm::SendError::PeerGone) => return Ok(()),
            Err(e) => return Err(format!("sending a reply to the host failed: {e}")),
        }
    }
}

/// The most arguments of a command the worker passes on without allocating a list.
const ARGS_ON_STACK: usize = 8;

/// A call's arguments.
enum Input<'a> {
    Args(&'a [RStr<'a>]),
    Bytes(&'a [u8]),
}

/// Calls capability `name` of `kind`; its output (a command's text, a transform's bytes) is
/// appended to `output`.
fn call(
    host: &Host,
    kind: &str,
    name: &str,
    input: Input<'_>,
    output: &mut RVec<u8>,
) -> Result<(), CallFailure> {
    let failure = |e: CallError| CallFailure {
        panicked: e.kind == CallErrorKind::Panicked,
        message: e.message_lossy().into_owned(),
    };
    let refused = |message: String| CallFailure {
        panicked: false,
        message,
    };
    // An application's own wire encoding first (it may even replace a built-in one's).
    if let (Some((_, wire)), Input::Bytes(request)) = (host.kinds().wire(kind), &input) {
        // The application's code: a panic in it fails this call, not the worker.
        let serve = || (wire.serve)(host.registry(), name, request, output);
        return match std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve)) {
            Ok(result) => result.map_err(failure),
            Err(_) => Err(CallFailure {
                panicked: true,
                message: format!("the application's wire encoding of kind `{kind}` panicked"),
            }),
        };
    }
    match (kind, input) {
        ("command", Input::Args(args)) => {
            let command = host
                .registry()
                .get::<CommandKind>(name)
                .map_err(|e| refused(e.to_string()))?;
            command
                .call(RSlice::from_slice(args))
                .into_result()
                .map(|out| output.extend_from_copy_slice(out.as_bytes()))
                .map_err(failure)
        }
        ("transform", Input::Bytes(input)) => {
            let transform = host
                .registry()
                .get::<TransformKind>(name)
                .map_err(|e| refused(e.to_string()))?;
            transform
                .apply(RSlice::from_slice(input), output)
                .into_result()
                .map_err(failure)
        }
        (kind, _) => Err(refused(format!(
            "the worker cannot call a {kind} with these arguments"
        ))),
    }
}

/// Whether `fd` (and `shm`) may be taken as this process's own: open, above the standard
/// three, and distinct.
fn inherited(fd: RawFd, shm: Option<RawFd>) -> Result<(), String> {
    if shm == Some(fd) {
        return Err(format!("--fd and --shm name one descriptor ({fd})"));
    }
    for d in std::iter::once(fd).chain(shm) {
        // SAFETY: `fcntl(F_GETFD)` only reads the descriptor's flags; any number may be asked.
        if d < 3 || unsafe { libc::fcntl(d, libc::F_GETFD) } < 0 {
            return Err(format!(
                "descriptor {d} is not one the host passed (not open, or standard)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_distinct_descriptors_from_the_command_line_are_taken() {
        use std::os::fd::AsRawFd;
        let (a, b) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
        let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
        assert_eq!(inherited(a, Some(b)), Ok(()));
        assert_eq!(inherited(a, None), Ok(()));
        // One descriptor for both: it would be owned, and closed, twice.
        assert!(inherited(a, Some(a))
            .unwrap_err()
            .contains("one descriptor"));
        // A standard one, or one not open.
        assert!(inherited(0, Some(b)).is_err());
        assert!(inherited(a, Some(1 << 20))
            .unwrap_err()
            .contains("not open"));
    }
    #[test]
    fn descriptors_are_marked_close_on_exec_without_close_range_too() {
        let cloexec = |fd: RawFd| {
            // SAFETY: `fcntl(F_GETFD)` takes no pointers.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(flags >= 0);
            flags & libc::FD_CLOEXEC != 0
        };
        for mark in [close_on_exec_from, mark_listed_from] {
            // SAFETY: `open` of a constant path without `O_CLOEXEC`; checked, then owned.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            assert!(fd >= 3);
            // SAFETY: just opened above, ours alone.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            assert!(!cloexec(fd));
            mark(fd).unwrap();
            assert!(cloexec(fd), "descriptor {fd} is not close-on-exec");
            drop(owned);
        }
    }
}
