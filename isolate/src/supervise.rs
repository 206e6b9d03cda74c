//! Supervising one isolated plugin: its workers, calls with deadlines, restarts with backoff,
//! and giving up after [`MAX_FAILURES`] consecutive failures.
//!
//! A plugin has a pool of one or more worker slots ([`crate::Isolation::workers`]), each
//! serving one call at a time: call `n` goes to slot `n % slots` (waiting for it when busy),
//! so up to `slots` calls run at once, each in a process of its own. The first slot's
//! worker starts with the plugin, the others on their first call; a worker that failed is
//! replaced on its slot's next call. Failures count for the plugin as a whole.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use abi_stable::std_types::RVec;
use plugin_api::{CallError, CallErrorKind};
use plugin_protocol::{CallFailure, Capability};

use super::shm::ByteSink;
use super::spawn::{start, Exchange, Input, Spec, StartError, Target, Worker};
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
/// The most calls of one stream in flight to a worker ([`Supervisor::transform_stream`]):
/// one computed while the next is copied in.
const MAX_IN_FLIGHT: usize = 2;

/// One isolated plugin's worker and its history.
pub(crate) struct Supervisor {
    plugin: Arc<str>,
    /// What the first worker registered: the host holds a proxy for each, so every later
    /// worker must serve them all (a reload may add more, which are not registered).
    registered: Vec<Capability>,
    call_timeout: Duration,
    next_id: AtomicU64,
    /// No failure since the last success and not unregistered: calls need not take `state`'s
    /// lock (cleared by [`Supervisor::failed`], set again by the next success).
    healthy: AtomicBool,
    state: Mutex<State>,
    /// The worker slots, each serving one call at a time. Lock order: a slot, then `state`
    /// (never the other way round); never two slots but in [`Supervisor::replace`], in order.
    slots: Box<[Mutex<Option<Worker>>]>,
}

struct State {
    /// How to start a worker: the first load's, or the last reload's.
    spec: Arc<Spec>,
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
        let (mut worker, capabilities) = start(&spec)?;
        worker.resolve(&capabilities, &capabilities);
        let mut slots = vec![Some(worker)];
        slots.resize_with(workers.max(1), || None);
        let supervisor = Supervisor {
            plugin: spec.plugin.clone(),
            registered: capabilities.clone(),
            call_timeout,
            next_id: AtomicU64::new(1),
            healthy: AtomicBool::new(true),
            slots: slots.into_iter().map(Mutex::new).collect(),
            state: Mutex::new(State {
                spec: Arc::new(spec),
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
        // Healthy: never retired since, and told without the lock (every lookup asks).
        if self.healthy.load(Ordering::Acquire) {
            return None;
        }
        self.lock().retired.clone()
    }

    pub(crate) fn status(&self) -> IsolatedPlugin {
        let (pid, sent) = self.slots[0]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or((None, Default::default()), |w| (Some(w.pid), w.sent));
        let state = self.lock();
        IsolatedPlugin {
            name: self.plugin.to_string(),
            pid,
            sent,
            starts: state.starts,
            consecutive_failures: state.failures,
            unregistered: state.retired.clone(),
        }
    }

    /// The error of a call to a plugin that was unregistered, if it was.
    fn retired_error(&self) -> Option<CallError> {
        if self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let state = self.lock();
        let (reason, message) = state.retired.as_ref()?;
        Some(error(format!("{message} [{reason}]")))
    }

    /// Calls capability `target` in the worker, its output appended to `output` (only
    /// if it succeeds); or the plugin's own error, or a failure of the worker (with its reason code at the end
    /// of the message). Allocates nothing once the channel's buffers have grown, beyond what
    /// `output` needs (see [`Worker::exchange`]).
    pub(crate) fn call(
        &self,
        target: Target<'_>,
        input: Input<'_>,
        output: &mut dyn ByteSink,
    ) -> Result<(), CallError> {
        if let Some(e) = self.retired_error() {
            return Err(e);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.slot(id);
        self.call_on(&mut slot, id, target, input, output)
    }

    /// [`Supervisor::call`] on the worker of `slot` (started first if there is none).
    fn call_on(
        &self,
        slot: &mut Option<Worker>,
        id: u64,
        target: Target<'_>,
        input: Input<'_>,
        output: &mut dyn ByteSink,
    ) -> Result<(), CallError> {
        let worker = self.ensure_worker(slot)?;
        let before = output.contents().len();
        let deadline = Instant::now() + self.call_timeout;
        // Log records never come here: the reader thread emits them as they arrive.
        let exchanged = worker.exchange(id, target, input, deadline, output);
        match self.judge(worker, target, None, exchanged, output, before) {
            Ok(result) => {
                self.succeeded();
                result.map_err(call_error)
            }
            Err(failure) => {
                *slot = None;
                Err(self.failed(&mut self.lock(), failure))
            }
        }
    }

    /// The worker of `slot`: the one there, or a new one (after the backoff), or why none.
    /// A worker left with calls in flight (a stream whose caller panicked) is out of step
    /// with its replies: it is replaced.
    fn ensure_worker<'s>(&self, slot: &'s mut Option<Worker>) -> Result<&'s mut Worker, CallError> {
        let plugin = &self.plugin;
        if let Some(worker) = slot.as_mut().filter(|w| w.in_flight > 0) {
            tracing::debug!("plugin `{plugin}`: a stream was abandoned; its worker is replaced");
            worker.kill();
            *slot = None;
        }
        if slot.is_none() {
            // The backoff and the start (up to the start timeout) run without the plugin's
            // state locked: every lookup of the plugin and the other slots' calls take it.
            // The spec cannot change meanwhile: a reload waits for every slot, this one too.
            let (spec, not_before) = {
                let mut state = self.lock();
                if let Some((reason, message)) = &state.retired {
                    return Err(error(format!("{message} [{reason}]")));
                }
                state.starts += 1;
                (state.spec.clone(), state.not_before)
            };
            if let Some(when) = not_before {
                std::thread::sleep(when.saturating_duration_since(Instant::now()));
            }
            let started = start(&spec);
            let mut state = self.lock();
            // Retired by another slot's failures meanwhile: this worker is not used either.
            if let Some((reason, message)) = &state.retired {
                if let Ok((mut worker, _)) = started {
                    worker.kill();
                }
                return Err(error(format!("{message} [{reason}]")));
            }
            match started {
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
                Ok((mut worker, capabilities)) => {
                    tracing::info!("plugin `{plugin}`: worker restarted (pid {})", worker.pid);
                    // Handles are this worker's: resolved again, whatever the last one had.
                    worker.resolve(&self.registered, &capabilities);
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
        Ok(slot.as_mut().expect("a worker was started above"))
    }

    /// A call was answered: the failure count starts again.
    fn succeeded(&self) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        state.failures = 0;
        state.not_before = None;
        self.healthy
            .store(state.retired.is_none(), Ordering::Release);
    }

    /// Runs the transform `name` (at `index` of [`Supervisor::registered`], if it is one) over
    /// `chunks`, in order, with up to [`MAX_IN_FLIGHT`] calls in flight to one worker: the
    /// worker computes one chunk while the next is copied into its ring, and its output is
    /// copied out while it computes the next. Each chunk's output is put in `output` (cleared
    /// first) and handed to `each`, in the order of the chunks. Each call keeps its own
    /// deadline, counted from when the worker could start on it (its call sent and the one
    /// before answered). Returns the number of chunks done, or the error of the first that
    /// failed (with its position): every chunk before it was handed to `each`, none after —
    /// a worker that dies or hangs mid-stream fails the chunk it was on, with its reason code,
    /// and the chunks after it are not run.
    ///
    /// The stream holds one worker slot throughout. Over a version-1 worker (no call
    /// channel) the chunks go one at a time.
    pub(crate) fn transform_stream<C: AsRef<[u8]>>(
        &self,
        name: &str,
        index: Option<usize>,
        chunks: &mut dyn Iterator<Item = C>,
        output: &mut RVec<u8>,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, (usize, CallError)> {
        let target = Target {
            kind: "transform",
            name,
            index,
        };
        if let Some(e) = self.retired_error() {
            return Err((0, e));
        }
        let first = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.slot(first);
        let capacity = match self.ensure_worker(&mut slot) {
            Ok(worker) => worker.ring_capacity(),
            Err(e) => return Err((0, e)),
        };
        let Some(capacity) = capacity else {
            let mut done = 0;
            for (i, chunk) in chunks.enumerate() {
                let id = if i == 0 {
                    first
                } else {
                    self.next_id.fetch_add(1, Ordering::Relaxed)
                };
                output.clear();
                self.call_on(&mut slot, id, target, Input::Bytes(chunk.as_ref()), output)
                    .map_err(|e| (i, e))?;
                each(output);
                done += 1;
            }
            return Ok(done);
        };
        let timeout = self.call_timeout;
        // (id, the bytes it holds in the worker's ring, when it was sent)
        let mut in_flight: VecDeque<(u64, usize, Instant)> = VecDeque::with_capacity(MAX_IN_FLIGHT);
        let mut used = 0;
        let mut done = 0;
        let mut last_done = Instant::now();
        let mut next = chunks.next();
        let mut id = first;
        loop {
            let worker = slot.as_mut().expect("the stream's worker");
            // Send while the worker's ring has room for every call in flight.
            while let Some(chunk) = &next {
                let input = Input::Bytes(chunk.as_ref());
                let bytes = worker.ring_bytes(target, input);
                if !in_flight.is_empty()
                    && (in_flight.len() == MAX_IN_FLIGHT || used + bytes > capacity)
                {
                    break;
                }
                let sent = Instant::now();
                match worker.send_call(id, target, input, sent + timeout) {
                    Ok(()) => {}
                    // Not sent: refused once the calls before it are answered.
                    Err(Exchange::TooLarge(m)) => {
                        if !in_flight.is_empty() {
                            break;
                        }
                        let plugin = &self.plugin;
                        return Err((done, error(format!("plugin `{plugin}` (isolated): {m}"))));
                    }
                    Err(exchanged) => {
                        let failure = self.judge(worker, target, Some(done), exchanged, output, 0);
                        let failure = failure.expect_err("a failed send is the worker's failure");
                        slot.take();
                        return Err((done, self.failed(&mut self.lock(), failure)));
                    }
                }
                in_flight.push_back((id, bytes, sent));
                used += bytes;
                next = chunks.next();
                id = self.next_id.fetch_add(1, Ordering::Relaxed);
            }
            let Some((call, bytes, sent)) = in_flight.pop_front() else {
                return Ok(done);
            };
            used -= bytes;
            output.clear();
            let exchanged = worker.recv_reply(call, sent.max(last_done) + timeout, output);
            match self.judge(worker, target, Some(done), exchanged, output, 0) {
                Ok(Ok(())) => {
                    self.succeeded();
                    last_done = Instant::now();
                    each(output);
                    done += 1;
                }
                Ok(Err(failure)) => {
                    // The plugin's own error: the worker goes on. The replies of the calls
                    // still in flight are read and dropped, so that it stays in step.
                    self.succeeded();
                    for (call, _, sent) in in_flight.drain(..) {
                        output.clear();
                        let exchanged =
                            worker.recv_reply(call, sent.max(Instant::now()) + timeout, output);
                        if let Err(lost) =
                            self.judge(worker, target, Some(done), exchanged, output, 0)
                        {
                            slot.take();
                            // Counted; the error the caller needs is the plugin's, below.
                            let _ = self.failed(&mut self.lock(), lost);
                            break;
                        }
                    }
                    output.clear();
                    return Err((done, call_error(failure)));
                }
                Err(failure) => {
                    slot.take();
                    return Err((done, self.failed(&mut self.lock(), failure)));
                }
            }
        }
    }

    /// What the round trip `exchanged` of a call to `target` (chunk `chunk` of a stream, if
    /// it is one) means: the worker's answer, or its failure (the worker then killed, or
    /// reaped with how it died). `output` loses what the call added past `before` when the
    /// call fails.
    fn judge(
        &self,
        worker: &mut Worker,
        target: Target<'_>,
        chunk: Option<usize>,
        exchanged: Exchange,
        output: &mut dyn ByteSink,
        before: usize,
    ) -> Result<Result<(), CallFailure>, Failure> {
        let plugin = &self.plugin;
        let what = || match chunk {
            None => format!("{} `{}`", target.kind, target.name),
            Some(i) => format!("{} `{}` (chunk {i} of a stream)", target.kind, target.name),
        };
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
            Exchange::TooLarge(e) => Ok(Err(CallFailure {
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
        self.healthy.store(false, Ordering::Release);
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

/// The plugin's own failure as the caller's error. A message that ends as the host's own
/// failures do (` [plugin-timeout]`, read by [`crate::reason`]) is marked as the plugin's,
/// so that it is never taken for the host's word.
fn call_error(f: CallFailure) -> CallError {
    let mut error = CallError {
        kind: if f.panicked {
            CallErrorKind::Panicked
        } else {
            CallErrorKind::Failed
        },
        message: f.message.into(),
    };
    if crate::reason(&error).is_some() {
        error.message.push_str(" (the plugin's own message)");
    }
    error
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
        let mut worker = worker;
        worker.resolve(&self.registered, &capabilities);
        let mut state = self.lock();
        state.spec = Arc::new(spec);
        state.capabilities = capabilities;
        state.starts += 1;
        state.failures = 0;
        state.not_before = None;
        state.retired = None;
        self.healthy.store(true, Ordering::Release);
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
    fn a_plugins_own_message_is_never_taken_for_the_hosts_reason() {
        use plugin_api::{CallError, CallErrorKind};
        for (panicked, message) in [
            (false, "upstream said [plugin-timeout]"),
            (true, "boom [plugin-crashed]"),
            (false, "[protocol-error]"),
        ] {
            let failure = plugin_protocol::CallFailure {
                panicked,
                message: message.into(),
            };
            let error = super::call_error(failure);
            assert_eq!(crate::reason(&error), None, "{}", error.message);
            assert!(error.message.starts_with(message), "{}", error.message);
        }
        // An ordinary message is the plugin's, unchanged; the host's own tag is read.
        let plain = plugin_protocol::CallFailure {
            panicked: false,
            message: "no such file [42]".into(),
        };
        assert_eq!(
            super::call_error(plain).message.as_str(),
            "no such file [42]"
        );
        let hosts = CallError {
            kind: CallErrorKind::Failed,
            message: "plugin `p` did not answer within 1s [plugin-timeout]".into(),
        };
        assert_eq!(crate::reason(&hosts), Some(host::ReasonCode::PluginTimeout));
    }

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
