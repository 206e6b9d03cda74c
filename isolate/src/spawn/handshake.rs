//! The handshake with a starting worker: `hello` / `welcome` on the control socket (the
//! protocol version chosen), the welcome again on the shared-memory call channel for version
//! 2, then `load` and the worker's `registered` or `refused`.

use std::time::{Duration, Instant};

use plugin_protocol::{
    decode, Capability, Message, COOKIE, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};

use super::{next, shm, Event, Spec, StartError, Worker, SHM_VERSION};
use host::ReasonCode;

use crate::bounds::{shown, MAX_LOG_TEXT};

/// Version 2: the worker proves it mapped the call channel by sending its welcome again there.
fn shm_welcome(
    worker: &mut Worker,
    spec: &Spec,
    deadline: Instant,
    pid: u32,
    chosen: u16,
    failed: &impl Fn(&mut Worker, String) -> StartError,
) -> Result<(), StartError> {
    let Some(channel) = &mut worker.shm else {
        return Ok(());
    };
    let got = channel.recv_into(&mut worker.rx, Some(deadline));
    let what = match got {
        Ok(_) => match decode(&worker.rx) {
            Ok((
                Message::Welcome {
                    cookie,
                    version,
                    pid: again,
                },
                used,
            )) if cookie == COOKIE
                && version == chosen
                && again == pid
                && used == worker.rx.len() =>
            {
                return Ok(())
            }
            Ok((other, _)) => format!(
                "answered on the shared-memory call channel with a {} message that does not \
                 match its welcome",
                other.name()
            ),
            Err(e) => format!("sent garbage on the shared-memory call channel ({e})"),
        },
        Err(shm::RecvError::Timeout) => format!(
            "chose protocol version {chosen} (calls in shared memory) but did not answer on \
             the shared-memory call channel within {}s",
            spec.start_timeout.as_secs_f64()
        ),
        Err(shm::RecvError::PeerGone) => {
            let death = worker.death();
            return Err(StartError::new(
                ReasonCode::HandshakeFailed,
                format!(
                    "plugin `{}`: the worker ended before the handshake: {death}",
                    spec.plugin
                ),
            ));
        }
        Err(e) => format!("broke the shared-memory call channel in the handshake ({e})"),
    };
    Err(failed(worker, what))
}

pub(super) fn handshake(
    worker: &mut Worker,
    spec: &Spec,
    deadline: Instant,
) -> Result<Vec<Capability>, StartError> {
    let plugin = &spec.plugin;
    let failed = |worker: &mut Worker, what: String| {
        worker.kill();
        let tail = worker.tail.clause(Duration::from_millis(300));
        StartError::new(
            ReasonCode::HandshakeFailed,
            format!(
                "plugin `{plugin}`: the worker (`{}`, pid {}) {what}; {tail}",
                spec.program.display(),
                worker.pid
            ),
        )
    };
    let hello = Message::Hello {
        cookie: COOKIE,
        min_version: PROTOCOL_VERSION_MIN,
        max_version: if worker.shm.is_some() {
            PROTOCOL_VERSION
        } else {
            SHM_VERSION - 1
        },
    };
    // A failed send (the worker is already gone) shows as the end of its stream, next.
    let _ = worker.send(&hello, deadline);
    match next(worker, deadline) {
        None => {
            let after = spec.start_timeout.as_secs_f64();
            return Err(failed(
                worker,
                format!("did not answer the handshake within {after}s"),
            ));
        }
        Some(Event::Message(Message::Welcome {
            cookie,
            version,
            pid,
        })) => {
            if cookie != COOKIE {
                return Err(failed(
                    worker,
                    "answered with another cookie: it is not a plugin-host worker".into(),
                ));
            }
            if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version) {
                return Err(failed(worker, format!(
                    "chose protocol version {version}, which this host does not speak ({PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION})"
                )));
            }
            if pid != worker.pid {
                return Err(failed(
                    worker,
                    format!("claims to be pid {pid}, not the process the host started"),
                ));
            }
            if version < SHM_VERSION || worker.shm.is_none() {
                // An older worker: calls go over the control socket.
                worker.shm = None;
            } else {
                shm_welcome(worker, spec, deadline, pid, version, &failed)?;
            }
            worker.version = version;
        }
        Some(Event::Message(Message::Refused { message, .. })) => {
            let message = shown(&message, MAX_LOG_TEXT);
            return Err(failed(worker, format!("refused the handshake: {message}")));
        }
        Some(Event::Message(other)) => {
            return Err(failed(
                worker,
                format!("answered the handshake with a {} message", other.name()),
            ))
        }
        Some(Event::Broken(e)) => {
            return Err(failed(
                worker,
                format!("sent garbage in the handshake ({e})"),
            ))
        }
        Some(Event::Closed) => {
            let death = worker.death();
            return Err(StartError::new(
                ReasonCode::HandshakeFailed,
                format!("plugin `{plugin}`: the worker ended before the handshake: {death}"),
            ));
        }
    }
    let _ = worker.send(&Message::Load(spec.load.clone()), deadline);
    match next(worker, deadline) {
        None => {
            worker.kill();
            let tail = worker.tail.suffix(Duration::from_millis(300));
            Err(StartError::new(
                ReasonCode::PluginTimeout,
                format!(
                    "plugin `{plugin}` did not finish loading and registering within {}s in \
                     its worker (pid {}), which was killed{tail}",
                    spec.start_timeout.as_secs_f64(),
                    worker.pid,
                ),
            ))
        }
        Some(Event::Message(Message::Registered {
            name, capabilities, ..
        })) => {
            if name != *spec.plugin {
                return Err(failed(
                    worker,
                    format!("loaded plugin `{}` instead", shown(&name, MAX_LOG_TEXT)),
                ));
            }
            Ok(capabilities)
        }
        Some(Event::Message(Message::Refused {
            status,
            reason,
            message,
        })) => {
            worker.shutdown();
            worker.kill();
            let reason = ReasonCode::parse(&reason).unwrap_or(ReasonCode::ProtocolError);
            Err(StartError {
                reason,
                message: shown(&message, MAX_LOG_TEXT),
                refused: Some(status),
            })
        }
        Some(Event::Message(other)) => Err(failed(
            worker,
            format!("answered the load request with a {} message", other.name()),
        )),
        Some(Event::Broken(e)) => Err(failed(worker, format!("sent garbage ({e})"))),
        Some(Event::Closed) => {
            let death = worker.death();
            Err(StartError::new(
                ReasonCode::PluginCrashed,
                format!(
                    "plugin `{plugin}` crashed its worker while loading or registering: {death}"
                ),
            ))
        }
    }
}
