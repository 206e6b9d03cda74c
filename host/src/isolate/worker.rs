//! The worker side: the body of `plugin-host __worker --fd N`.
//!
//! An application that isolates plugins runs the same in its own `main`, before anything
//! else, so that its binary can serve as its workers (the host starts them as
//! `<this executable> __worker --fd N`, see [`crate::Host::with_worker_command`]):
//!
//! ```ignore
//! if let Some(code) = host::isolate::worker::serve_if_worker(plugin_api::provenance_blob!()) {
//!     return code;
//! }
//! ```
//!
//! The worker answers the handshake, then verifies, loads and registers the one plugin the
//! host names, exactly as [`Host::load`] does, under the policy the host sends, with the
//! host's configuration string; then it serves calls, one at a time, until the host says
//! `shutdown` or its control socket ends (the host is gone). The plugin's log records go to
//! the host as log messages; anything written to stderr (or stdout) is read by the host and
//! logged under the plugin's name.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use abi_stable::std_types::{RSlice, RStr, RVec};
use plugin_api::logger::LogLevel;
use plugin_api::{CallError, CallErrorKind, CommandKind, TransformKind};
use plugin_protocol::{
    encode, negotiate, CallFailure, Capability, Level, Load, Message, Payload, COOKIE,
};

use super::transport::{Receiver, Sender, SocketReceiver, SocketSender};
use crate::host::{Host, HostIdentity};
use crate::policy::{CheckKind, Policy, Severity};
use crate::report::Status;

/// Runs the worker when the process's arguments are `__worker --fd N` (as the host starts
/// it): `Some(exit code)` then, `None` for any other arguments. `blob` is the application's
/// provenance (`plugin_api::provenance_blob!()`), the identity plugins are judged against.
pub fn serve_if_worker(blob: &[u8]) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("__worker") {
        return None;
    }
    let fd = match args.get(1..3) {
        Some([flag, n]) if flag == "--fd" => n.parse().ok(),
        _ => None,
    };
    let Some(fd) = fd else {
        eprintln!("usage: __worker --fd N");
        return Some(ExitCode::from(2));
    };
    Some(match HostIdentity::from_blob(blob) {
        Ok(identity) => serve(identity, fd),
        Err(e) => {
            eprintln!("worker: the application's provenance is unreadable: {e}");
            ExitCode::from(2)
        }
    })
}

/// Serves the host on control socket `fd` (inherited from the host), judging the plugin
/// against `identity`. Returns when the host says `shutdown` or goes away.
pub fn serve(identity: HostIdentity, fd: RawFd) -> ExitCode {
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
    match run(identity, &sender, &mut receiver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::from(2)
        }
    }
}

fn send(sender: &Mutex<Box<dyn Sender>>, message: &Message) -> Result<(), String> {
    let mut frame = Vec::new();
    encode(message, &mut frame);
    let mut sender = sender.lock().unwrap_or_else(|p| p.into_inner());
    sender
        .send(&frame)
        .map_err(|e| format!("sending {} to the host failed: {e}", message.name()))
}

fn recv(receiver: &mut dyn Receiver) -> Result<Option<Message>, String> {
    receiver.recv().map_err(|e| format!("from the host: {e}"))
}

fn run(
    identity: HostIdentity,
    sender: &Arc<Mutex<Box<dyn Sender>>>,
    receiver: &mut dyn Receiver,
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
    let Some(version) = negotiate(min_version, max_version) else {
        let message = format!(
            "no common protocol version: the host speaks {min_version}..={max_version}, this \
             worker {}..={}",
            plugin_protocol::PROTOCOL_VERSION_MIN,
            plugin_protocol::PROTOCOL_VERSION
        );
        let refused = Message::Refused {
            status: "failed".into(),
            reason: crate::ReasonCode::HandshakeFailed.as_str().into(),
            message: message.clone(),
        };
        send(sender, &refused)?;
        return Err(message);
    };
    send(
        sender,
        &Message::Welcome {
            cookie: COOKIE,
            version,
            pid: std::process::id(),
        },
    )?;
    // 2. The plugin.
    let Some(Message::Load(load)) = recv(receiver)? else {
        return Err("the host did not ask for a plugin".into());
    };
    let forward = sender.clone();
    let max_level = match load.max_log_level {
        0 => LogLevel::Off,
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        _ => LogLevel::Trace,
    };
    crate::log_bridge::forward_records_to(max_level, move |level, target, message| {
        let level = match level {
            LogLevel::Error => Level::Error,
            LogLevel::Warn => Level::Warn,
            LogLevel::Info => Level::Info,
            LogLevel::Debug => Level::Debug,
            LogLevel::Trace => Level::Trace,
            LogLevel::Off => return,
        };
        let record = Message::Log {
            level,
            target: crate::text::bounded(target, plugin_protocol::MAX_NAME_LEN / 2).into_owned(),
            message: message.to_owned(),
        };
        let _ = send(&forward, &record);
    });
    let (host, answer) = load_plugin(identity, &load);
    send(sender, &answer)?;
    if !matches!(answer, Message::Registered { .. }) {
        return Ok(());
    }
    // 3. Calls, one at a time.
    while let Some(message) = recv(receiver)? {
        match message {
            Message::Call {
                id,
                kind,
                name,
                payload,
            } => {
                let result = call(&host, &kind, &name, payload);
                send(sender, &Message::Reply { id, result })?;
            }
            Message::Shutdown => break,
            other => return Err(format!("unexpected {} message from the host", other.name())),
        }
    }
    Ok(())
}

/// Verifies, loads and registers the plugin as the host would in-process: the host (kept
/// for the calls) and the answer for the host.
fn load_plugin(identity: HostIdentity, load: &Load) -> (Host, Message) {
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
    let mut host = Host::new(identity)
        .with_policy(policy)
        .with_config(load.name.clone(), load.config.clone());
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
            reason: crate::ReasonCode::NameMismatch.as_str().into(),
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
                .unwrap_or(crate::ReasonCode::LoadFailed)
                .as_str()
                .into(),
            message,
        },
    };
    (host, answer)
}

fn call(host: &Host, kind: &str, name: &str, payload: Payload) -> Result<Vec<u8>, CallFailure> {
    let failure = |e: CallError| CallFailure {
        panicked: e.kind == CallErrorKind::Panicked,
        message: e.message_lossy().into_owned(),
    };
    let refused = |message: String| CallFailure {
        panicked: false,
        message,
    };
    match (kind, payload) {
        ("command", Payload::Args(args)) => {
            let command = host
                .registry()
                .get::<CommandKind>(name)
                .map_err(|e| refused(e.to_string()))?;
            let args: Vec<RStr<'_>> = args.iter().map(|a| RStr::from(a.as_str())).collect();
            command
                .call(RSlice::from_slice(&args))
                .into_result()
                .map(|out| out.as_bytes().to_vec())
                .map_err(failure)
        }
        ("transform", Payload::Bytes(input)) => {
            let transform = host
                .registry()
                .get::<TransformKind>(name)
                .map_err(|e| refused(e.to_string()))?;
            let mut output = RVec::new();
            transform
                .apply(RSlice::from_slice(&input), &mut output)
                .into_result()
                .map(|()| output.into_vec())
                .map_err(failure)
        }
        (kind, _) => Err(refused(format!(
            "the worker cannot call a {kind} with these arguments"
        ))),
    }
}
