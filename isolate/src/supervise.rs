//! Supervising one isolated plugin: its workers, calls with deadlines, restarts with backoff,
//! and giving up after [`MAX_FAILURES`] consecutive failures.
//!
//! A plugin has a pool of one or more worker slots ([`crate::Isolation::workers`]), each
//! serving one call at a time: call `n` goes to slot `n % slots` (waiting for it when busy),
//! so up to `slots` calls run at once, each in a process of its own. The first slot's
//! worker starts with the plugin, the others on their first call; a worker that failed is
//! replaced on its slot's next call. Failures count for the plugin as a whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use plugin_api::{CallError, CallErrorKind};
use plugin_protocol::Capability;

use super::shm::ByteSink;
use super::spawn::{start, Exchange, Input, Spec, StartError, Worker};
use super::{IsolatedPlugin, MAX_FAILURES};
use host::ReasonCode;

/// What to do about a worker that broke the protocol.
const PROTOCOL_FIX: &str = ". The next call starts a new worker; if this repeats, either the \
    worker program is not a plugin-host worker of this version (check `--worker` and \
    `with_worker_command`), or the plugin corrupts its worker's memory: report it to the \
    plugin's author, and keep the plugin isolated meanwhile";

/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a stopping worker may take to exit after the shutdown message.
const GRACE: Duration = Duration::from_millis(500);

/// One isolated plugin's worker and its history.
pub(crate) struct Supervisor {
    plugin: Arc<str>,
    /// What the first worker registered: the host holds a proxy for each, so every later
    /// worker must serve them all (a reload may add more, which are not registered).
    registered: Vec<Capability>,
    call_timeout: Duration,
    next_id: AtomicU64,
    state: Mutex<State>,
    /// The worker slots, each serving one call at a time. Lock order: a slot, then `state`
    /// (never the other way round); never two slots but in [`Supervisor::replace`], in order.
    slots: Box<[Mutex<Option<Worker>>]>,
}

struct State {
    /// How to start a worker: the first load's, or the last reload's.
    spec: Spec,
    /// What the current file's worker registered: every restart must register the same.
    capabilities: Vec<Capability>,
    starts: u32,
    failures: u32,
    /// No restart before this.
    not_before: Option<Instant>,
    retired: Option<(ReasonCode, String)>,
}

/// A failure of the worker (not of the plugin's own code, which returns its errors).
struct Failure {
    reason: ReasonCode,
    message: String,
}

impl Supervisor {
    /// Starts the first worker: the supervisor and what the plugin registered, or why not.
    pub(crate) fn start(
        spec: Spec,
        call_timeout: Duration,
        workers: usize,
    ) -> Result<(Supervisor, Vec<Capability>), StartError> {
        let (worker, capabilities) = start(&spec)?;
        let mut slots = vec![Some(worker)];
        slots.resize_with(workers.max(1), || None);
        let supervisor = Supervisor {
            plugin: spec.plugin.clone(),
            registered: capabilities.clone(),
            call_timeout,
            next_id: AtomicU64::new(1),
            slots: slots.into_iter().map(Mutex::new).collect(),
            state: Mutex::new(State {
                spec,
                capabilities: capabilities.clone(),
                starts: 1,
                failures: 0,
                not_before: None,
                retired: None,
            }),
        };
        Ok((supervisor, capabilities))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (there is none in this module's code paths that
        // hold it) must not make the plugin unusable forever.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot call `id` runs on: its own (`id % slots`) when free; else any free slot with
    /// a running worker; else its own, once free.
    fn slot(&self, id: u64) -> MutexGuard<'_, Option<Worker>> {
        let own = &self.slots[(id % self.slots.len() as u64) as usize];
        fn try_lock(slot: &Mutex<Option<Worker>>) -> Option<MutexGuard<'_, Option<Worker>>> {
            match slot.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        }
        if let Some(guard) = try_lock(own) {
            return guard;
        }
        for slot in self.slots.iter() {
            if let Some(guard) = try_lock(slot).filter(|g| g.is_some()) {
                return guard;
            }
        }
        own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plugin's name.
    pub(crate) fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Why the plugin was unregistered, once it was.
    pub(crate) fn retired(&self) -> Option<(ReasonCode, String)> {
        self.lock().retired.clone()
    }

    pub(crate) fn status(&self) -> IsolatedPlugin {
        let pid = self.slots[0]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|w| w.pid);
        let state = self.lock();
        IsolatedPlugin {
            name: self.plugin.to_string(),
            pid,
            starts: state.starts,
            consecutive_failures: state.failures,
            unregistered: state.retired.clone(),
        }
    }

    /// Calls capability `name` of `kind` in the worker, its output appended to `output` (only
    /// if it succeeds); or the plugin's own error, or a failure of the worker (with its reason code at the end
    /// of the message). Allocates nothing once the channel's buffers have grown, beyond what
    /// `output` needs (see [`Worker::exchange`]).
    pub(crate) fn call(
        &self,
        kind: &str,
        name: &str,
        input: Input<'_>,
        output: &mut dyn ByteSink,
    ) -> Result<(), CallError> {
        let plugin = &self.plugin;
        if let Some((reason, message)) = &self.lock().retired {
            return Err(error(format!("{message} [{reason}]")));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.slot(id);
        if slot.is_none() {
            let mut state = self.lock();
            if let Some((reason, message)) = &state.retired {
                return Err(error(format!("{message} [{reason}]")));
            }
            if let Some(when) = state.not_before {
                std::thread::sleep(when.saturating_duration_since(Instant::now()));
            }
            state.starts += 1;
            match start(&state.spec) {
                Ok((mut worker, capabilities)) if capabilities != state.capabilities => {
                    worker.kill();
                    let failure = Failure {
                        reason: ReasonCode::ProtocolError,
                        message: format!(
                            "plugin `{plugin}` registered other capabilities when its worker \
                             was restarted"
                        ),
                    };
                    return Err(self.failed(&mut state, failure));
                }
                Ok((worker, _)) => {
                    tracing::info!("plugin `{plugin}`: worker restarted (pid {})", worker.pid);
                    *slot = Some(worker);
                }
                Err(e) => {
                    let failure = Failure {
                        reason: e.reason,
                        message: format!(
                            "plugin `{plugin}`: restarting its worker failed: {}",
                            without_subject(plugin, &e.message)
                        ),
                    };
                    return Err(self.failed(&mut state, failure));
                }
            }
        }
        let worker = slot.as_mut().expect("a worker was started above");
        match self.exchange(worker, id, kind, name, input, output) {
            Ok(result) => {
                let mut state = self.lock();
                state.failures = 0;
                state.not_before = None;
                drop(state);
                result.map_err(|f| CallError {
                    kind: if f.panicked {
                        CallErrorKind::Panicked
                    } else {
                        CallErrorKind::Failed
                    },
                    message: f.message.into(),
                })
            }
            Err(failure) => {
                *slot = None;
                Err(self.failed(&mut self.lock(), failure))
            }
        }
    }

    /// Sends one call and waits for its reply until the deadline.
    fn exchange(
        &self,
        worker: &mut Worker,
        id: u64,
        kind: &str,
        name: &str,
        input: Input<'_>,
        output: &mut dyn ByteSink,
    ) -> Result<Result<(), plugin_protocol::CallFailure>, Failure> {
        let plugin = &self.plugin;
        let what = || format!("{kind} `{name}`");
        let deadline = Instant::now() + self.call_timeout;
        // Log records never come here: the reader thread emits them as they arrive.
        let before = output.contents().len();
        let exchanged = worker.exchange(id, kind, name, input, deadline, output);
        // A bound broken meanwhile (the worker is killed, see `bounds`) fails the call, even
        // one that was answered.
        if let Some(bound) = worker.bounds.broken() {
            output.truncate(before);
            worker.kill();
            return Err(Failure {
                reason: ReasonCode::ProtocolError,
                message: format!(
                    "plugin `{plugin}`'s worker {bound} during {}; it was killed{PROTOCOL_FIX}",
                    what()
                ),
            });
        }
        match exchanged {
            Exchange::Reply(result) => Ok(result),
            // Too large to send: the worker is fine, the call is refused.
            Exchange::TooLarge(e) => Ok(Err(plugin_protocol::CallFailure {
                panicked: false,
                message: format!("plugin `{plugin}` (isolated): {e}"),
            })),
            Exchange::Other(other) => {
                worker.kill();
                Err(Failure {
                    reason: ReasonCode::ProtocolError,
                    message: format!(
                        "plugin `{plugin}`'s worker answered {} with a {other} message; it was \
                         killed{PROTOCOL_FIX}",
                        what()
                    ),
                })
            }
            Exchange::Broken(e) => {
                worker.kill();
                Err(Failure {
                    reason: ReasonCode::ProtocolError,
                    message: format!(
                        "plugin `{plugin}`'s worker sent garbage during {} ({e}); it was \
                         killed{PROTOCOL_FIX}",
                        what()
                    ),
                })
            }
            Exchange::Closed => {
                let death = worker.death();
                Err(Failure {
                    reason: ReasonCode::PluginCrashed,
                    message: format!("plugin `{plugin}` crashed during {}: {death}", what()),
                })
            }
            Exchange::Timeout => {
                worker.kill();
                let tail = worker.tail.suffix(Duration::from_millis(200));
                Err(Failure {
                    reason: ReasonCode::PluginTimeout,
                    message: format!(
                        "plugin `{plugin}` did not answer {} within {}s; its worker (pid {}) \
                         was killed{tail}",
                        what(),
                        self.call_timeout.as_secs_f64(),
                        worker.pid
                    ),
                })
            }
        }
    }

    /// Counts a failure: logs it, sets the backoff, and unregisters the plugin after
    /// [`MAX_FAILURES`] in a row. The error for the call.
    fn failed(&self, state: &mut State, failure: Failure) -> CallError {
        let plugin = &self.plugin;
        state.failures += 1;
        let Failure { reason, message } = failure;
        // The failure is this call's error, which its caller reports: logged at debug only,
        // so that it is said once (`host=debug` shows it as it happens).
        tracing::debug!("[{reason}] {}", host::text::printable(&message));
        if state.failures >= MAX_FAILURES {
            let why = format!(
                "plugin `{plugin}` was unregistered after {} consecutive failures of its \
                 worker; the last: {}",
                state.failures,
                without_subject(plugin, &message)
            );
            tracing::debug!("[{reason}] {}", host::text::printable(&why));
            state.retired = Some((reason, why.clone()));
            return error(format!("{why} [{reason}]"));
        }
        // The first restart is immediate; the next ones wait 100 ms, 400 ms, … up to 2 s.
        let backoff = match state.failures {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 4u32.saturating_pow(n - 2)).min(MAX_BACKOFF),
        };
        state.not_before = Some(Instant::now() + backoff);
        error(format!("{message} [{reason}]"))
    }
}

/// `message` without its leading "plugin `NAME`", for a sentence that already names the
/// plugin: "plugin `p` crashed …" → "it crashed …", "plugin `p`'s worker …" → "its worker …",
/// "plugin `p`: …" → "…".
fn without_subject(plugin: &str, message: &str) -> String {
    let subject = format!("plugin `{plugin}`");
    let Some(rest) = message.strip_prefix(&subject) else {
        return message.to_owned();
    };
    if let Some(rest) = rest.strip_prefix("'s ") {
        format!("its {rest}")
    } else if let Some(rest) = rest.strip_prefix(": ") {
        rest.to_owned()
    } else if rest.starts_with(' ') {
        format!("it{rest}")
    } else {
        message.to_owned()
    }
}

fn error(message: String) -> CallError {
    CallError {
        kind: CallErrorKind::Failed,
        message: message.into(),
    }
}

impl Supervisor {
    /// What the first worker registered (the capabilities the host holds proxies for).
    pub(crate) fn registered(&self) -> &[Capability] {
        &self.registered
    }

    /// Switches to a reloaded worker, started from `spec` and registering `capabilities`
    /// (which include [`Supervisor::registered`]), on the first slot; the other slots' workers
    /// are retired too (their next call starts one from `spec`). Waits for the calls in
    /// flight (a call holds its slot), so they finish on the old workers and every later one
    /// goes to a new one. Clears the failure count and an unregistration. The old workers,
    /// for the caller to [`stop`] once the locks are released.
    pub(crate) fn replace(
        &self,
        spec: Spec,
        worker: Worker,
        capabilities: Vec<Capability>,
    ) -> Vec<Worker> {
        let mut slots: Vec<_> = self
            .slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut state = self.lock();
        state.spec = spec;
        state.capabilities = capabilities;
        state.starts += 1;
        state.failures = 0;
        state.not_before = None;
        state.retired = None;
        let old: Vec<Worker> = slots.iter_mut().filter_map(|s| s.take()).collect();
        *slots[0] = Some(worker);
        old
    }
}

/// Stops a worker gracefully: the shutdown message, then `SIGKILL` if it has not exited
/// after [`GRACE`]; either way, whatever is left of its process group is killed.
pub(crate) fn stop(mut worker: Worker) {
    worker.shutdown();
    worker.ended_by(Instant::now() + GRACE);
    worker.kill();
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let slot = slot.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Some(worker) = slot.take() {
                stop(worker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_subject;

    #[test]
    fn a_message_loses_its_subject_once() {
        let cases = [
            ("plugin `p` crashed during x", "it crashed during x"),
            (
                "plugin `p`'s worker sent garbage",
                "its worker sent garbage",
            ),
            ("plugin `p`: the worker ended", "the worker ended"),
            ("plugin `pq` crashed", "plugin `pq` crashed"),
            ("restarting failed", "restarting failed"),
        ];
        for (message, expected) in cases {
            assert_eq!(without_subject("p", message), expected);
        }
    }
}
