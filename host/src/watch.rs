//! Watching the plugin code the host runs while loading: which plugin it is, whether it
//! has been running for too long, and whether it ended the process; and, for the calls an
//! application notes ([`crate::Host::calling`]), which plugin and capability a thread calls,
//! so that an `exit` or a crash in a call names them too.
//!
//! A library's constructors run inside `dlopen`, and its `register` right after. If either
//! never returns, a scan hangs with no word; if either calls `exit`, the process ends and a
//! caller might take the silence for success. While plugin code runs for the host, the
//! host notes what it is running here: a watchdog thread warns once it has run longer than
//! the host's hang warning (Firefox's hang detector does the same for its plugins), an
//! `atexit` hook turns an exit during it into a loud failure (see [`PLUGIN_EXIT_STATUS`]),
//! and a crash during it (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGABRT`) prints which
//! plugin was running before the process dies as it would have.
//!
//! Loads are serialised process-wide while watched (the dynamic loader serialises them
//! anyway), so "the plugin being loaded" is always one plugin.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

/// The exit status of a process that a plugin tried to end (with `exit`) while the host was
/// loading or registering it: never 0, so a scan cut short never looks like success.
pub const PLUGIN_EXIT_STATUS: i32 = 3;

/// [`PLUGIN_EXIT_STATUS`] as text, made at compile time: the exit hook may not allocate.
#[cfg(unix)]
const EXIT_STATUS_TEXT: &[u8] = b"3";
#[cfg(unix)]
const _: () = assert!(PLUGIN_EXIT_STATUS == 3, "EXIT_STATUS_TEXT says 3");

struct Running {
    /// What the plugin is being run for, e.g. "registering plugin `x` (/p/libx.so)".
    what: String,
    since: Instant,
    warn_after: Option<Duration>,
    warned: bool,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();
/// Whether the watchdog waits with no deadline (and so must be woken for a new one). Written
/// only under the `RUNNING` lock.
static IDLE: AtomicBool = AtomicBool::new(false);
/// Held while plugin code runs for a host: one watched load at a time.
static LOADING: Mutex<()> = Mutex::new(());

/// What runs now, for the exit hook and the signal handler, which may neither lock nor
/// allocate: the bytes of the (escaped, bounded) description, and their length (0: nothing
/// runs). A torn description is the worst a concurrent reader can see, never memory that is
/// not there.
const NOTE_CAPACITY: usize = 512;

struct Note {
    bytes: [AtomicU8; NOTE_CAPACITY],
    len: AtomicUsize,
}

impl Note {
    const fn new() -> Note {
        Note {
            bytes: [const { AtomicU8::new(0) }; NOTE_CAPACITY],
            len: AtomicUsize::new(0),
        }
    }

    fn set(&self, what: &str) {
        let text = crate::text::printable(what);
        let text = crate::text::bounded(&text, NOTE_CAPACITY / 4);
        let bytes = &text.as_bytes()[..text.len().min(NOTE_CAPACITY)];
        self.len.store(0, Ordering::SeqCst);
        for (slot, &b) in self.bytes.iter().zip(bytes) {
            slot.store(b, Ordering::Relaxed);
        }
        self.len.store(bytes.len(), Ordering::SeqCst);
    }

    fn clear(&self) {
        self.len.store(0, Ordering::SeqCst);
    }

    /// Copies the note into `buffer`; returns its length (0: no note).
    #[cfg(unix)]
    fn read(&self, buffer: &mut [u8; NOTE_CAPACITY]) -> usize {
        let len = self.len.load(Ordering::SeqCst).min(NOTE_CAPACITY);
        for (b, slot) in buffer.iter_mut().zip(&self.bytes[..len]) {
            *b = slot.load(Ordering::Relaxed);
        }
        len
    }
}

/// The plugin being loaded or registered: written only by the thread holding `LOADING`.
static NOTE: Note = Note::new();

thread_local! {
    /// The in-process plugin code this thread calls now ([`CallWatch`]). Const-initialised
    /// and without a destructor: reading it from a signal handler or an exit hook on this
    /// thread is a plain thread-local access.
    static CALL_NOTE: Note = const { Note::new() };
}

fn set_note(what: &str) {
    NOTE.set(what);
}

/// Copies what runs now into `buffer` — the call this thread is making, else the plugin
/// being loaded —; returns its length (0: no plugin code runs for the host).
#[cfg(unix)]
fn read_note(buffer: &mut [u8; NOTE_CAPACITY]) -> usize {
    let call = CALL_NOTE.try_with(|note| note.read(buffer)).unwrap_or(0);
    if call > 0 {
        return call;
    }
    NOTE.read(buffer)
}

/// Installs the exit hook, the fatal-signal handlers and the hang watchdog, once.
fn install() {
    static START: Once = Once::new();
    START.call_once(|| {
        #[cfg(unix)]
        // SAFETY: `on_exit` is an `extern "C" fn()` that never unwinds (see there).
        if unsafe { libc::atexit(on_exit) } != 0 {
            tracing::debug!("cannot register the exit hook: a plugin's exit() will go unnoticed");
        }
        #[cfg(unix)]
        crash::install();
        if let Err(e) = std::thread::Builder::new()
            .name("plugin-hang-watch".into())
            .spawn(watchdog)
        {
            tracing::debug!("cannot start the hang watchdog: {e}");
        }
    });
}

/// This thread calls in-process plugin code until this is dropped ([`Host::calling`]): an
/// `exit` or a fatal signal meanwhile names it, as during loading.
///
/// [`Host::calling`]: crate::Host::calling
#[must_use = "the call is noted only while the watch lives"]
pub struct CallWatch {
    /// Not `Send`: the note is this thread's.
    _thread: std::marker::PhantomData<*const ()>,
}

impl CallWatch {
    /// Notes that this thread runs `what` (e.g. "calling command `x` of plugin `p` (PATH)").
    pub(crate) fn enter(what: &str) -> CallWatch {
        install();
        CALL_NOTE.with(|note| note.set(what));
        CallWatch {
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for CallWatch {
    fn drop(&mut self) {
        let _ = CALL_NOTE.try_with(Note::clear);
    }
}

/// Plugin code is running for the host until this is dropped.
pub(crate) struct Watch {
    _serial: MutexGuard<'static, ()>,
}

/// Notes that plugin code runs now for `what`; warns if it runs for longer than
/// `warn_after`.
pub(crate) fn enter(what: String, warn_after: Option<Duration>) -> Watch {
    install();
    let serial = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
    set_note(&what);
    set(Some(Running {
        what,
        since: Instant::now(),
        warn_after,
        warned: false,
    }));
    Watch { _serial: serial }
}

impl Watch {
    /// The same plugin moves on to another step (e.g. from loading to registering).
    pub(crate) fn step(&self, what: String) {
        set_note(&what);
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = running.as_mut() {
            r.what = what;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        NOTE.clear();
        set(None);
    }
}

/// Sets what runs now. The watchdog is woken only when it waits with no deadline and a
/// deadline appears: a scan of many plugins costs no wake-up per plugin.
fn set(value: Option<Running>) {
    let wake = value.as_ref().is_some_and(|r| r.warn_after.is_some());
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    *running = value;
    // Read under the lock: the watchdog changes `IDLE` only while holding it.
    let idle = IDLE.load(Ordering::SeqCst);
    drop(running);
    if wake && idle {
        CHANGED.notify_all();
    }
}

fn watchdog() {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let mut warning = None;
        let wait = match running.as_mut() {
            Some(r) if !r.warned && r.warn_after.is_some() => {
                let limit = r.warn_after.unwrap_or_default();
                let elapsed = r.since.elapsed();
                if elapsed >= limit {
                    r.warned = true;
                    warning = Some((r.what.clone(), elapsed));
                    None
                } else {
                    Some(limit - elapsed)
                }
            }
            _ => None,
        };
        if let Some((what, elapsed)) = warning {
            // Logged without the lock: a plugin calling `exit` meanwhile must find the
            // state free (the exit hook does not lock anyway).
            drop(running);
            tracing::warn!(
                "{} has not returned after {:.1} s; the host is waiting for it (a plugin that \
                 never returns hangs the host: remove it from the plugin directory)",
                crate::text::printable(&what),
                elapsed.as_secs_f64()
            );
            running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        IDLE.store(wait.is_none(), Ordering::SeqCst);
        running = match wait {
            Some(wait) => {
                CHANGED
                    .wait_timeout(running, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => CHANGED
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner),
        };
        IDLE.store(false, Ordering::SeqCst);
    }
}

/// Writes `parts` to standard error with `write(2)` (no locks, no allocation).
#[cfg(unix)]
fn write_stderr(parts: &[&[u8]]) {
    for part in parts {
        // SAFETY: writing a valid, initialised buffer to the standard error descriptor.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
}

/// Runs at `exit`: if plugin code was running for the host, the process is being ended while
/// it loads. Say which, and exit with [`PLUGIN_EXIT_STATUS`] instead of the exit's status.
#[cfg(unix)]
extern "C" fn on_exit() {
    // Nothing here may unwind or lock (the exiting thread may hold any lock).
    let mut note = [0u8; NOTE_CAPACITY];
    let len = read_note(&mut note);
    if len == 0 {
        return;
    }
    write_stderr(&[
        b"error: the process was ended (exit() was called) while ",
        &note[..len],
        b"; the work was not finished (exit status ",
        EXIT_STATUS_TEXT,
        b"); remove the plugin from the plugin directory\n",
    ]);
    // SAFETY: ends the process at once, without running further exit handlers, so that the
    // status stays ours.
    unsafe { libc::_exit(PLUGIN_EXIT_STATUS) };
}

/// Naming the plugin a fatal signal came from.
#[cfg(unix)]
mod crash {
    use super::{read_note, write_stderr, NOTE_CAPACITY};

    const SIGNALS: [(libc::c_int, &str); 5] = [
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGABRT, "SIGABRT"),
    ];

    /// The actions that were installed before ours, to hand each signal on to. Written once,
    /// before our handler is installed for that signal; only read afterwards.
    static mut PREVIOUS: [Option<libc::sigaction>; 5] = [None; 5];

    /// Installs the handlers (called once, from a `Once`).
    pub(super) fn install() {
        for (i, (signal, _)) in SIGNALS.iter().enumerate() {
            // SAFETY: zeroed `sigaction`s are valid values to fill in; the previous action is
            // read and stored before ours is installed, so a handler never sees it unset;
            // `on_fatal` has the `SA_SIGINFO` handler signature.
            unsafe {
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*signal, std::ptr::null(), &mut previous) != 0 {
                    continue;
                }
                (*std::ptr::addr_of_mut!(PREVIOUS))[i] = Some(previous);
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(*signal, &action, std::ptr::null_mut());
            }
        }
    }

    /// Prints which plugin was running (if one was), then hands the signal to the action
    /// that was there before (Rust's stack-overflow report, or the default: the process dies
    /// of the same signal as without us).
    extern "C" fn on_fatal(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        let index = SIGNALS.iter().position(|(s, _)| *s == signal);
        // SAFETY: `PREVIOUS` is only read here, after it was written (see `install`).
        let previous = index.and_then(|i| unsafe { (*std::ptr::addr_of!(PREVIOUS))[i] });
        // SAFETY: `info` is null or the `siginfo_t` the kernel passed.
        let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
        if sent && previous.is_some_and(|p| p.sa_sigaction == libc::SIG_IGN) {
            return; // the application ignores this signal when it is sent
        }
        let mut note = [0u8; NOTE_CAPACITY];
        let len = read_note(&mut note);
        if len > 0 {
            let name = index.map_or("signal", |i| SIGNALS[i].1);
            write_stderr(&[
                name.as_bytes(),
                b" -- error: fatal signal while ",
                &note[..len],
                b": the plugin crashed the process\n",
            ]);
        }
        // SAFETY: only async-signal-safe calls (`sigaction`, `raise`) or the previous
        // handler, called as it was installed to be called.
        unsafe {
            match previous {
                Some(prev)
                    if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN =>
                {
                    if prev.sa_flags & libc::SA_SIGINFO != 0 {
                        let handler: extern "C" fn(
                            libc::c_int,
                            *mut libc::siginfo_t,
                            *mut libc::c_void,
                        ) = std::mem::transmute(prev.sa_sigaction);
                        handler(signal, info, context);
                    } else {
                        let handler: extern "C" fn(libc::c_int) =
                            std::mem::transmute(prev.sa_sigaction);
                        handler(signal);
                    }
                }
                _ => {
                    // The default action: restore it. A fault re-runs the faulting
                    // instruction when this returns; a signal that was sent (`abort`,
                    // `kill`) is raised again. Either way the process dies of this signal.
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(signal, &action, std::ptr::null_mut());
                    if sent {
                        libc::raise(signal);
                    }
                }
            }
        }
    }
}

/// A watch naming the in-process providers among `capabilities` (see [`crate::Host::calling`]).
pub(crate) fn calling(
    registry: &crate::Registry,
    plugins: &[crate::LoadedPlugin],
    capabilities: &[(&str, &str)],
) -> Option<CallWatch> {
    let mut parts = Vec::new();
    for (kind, name) in capabilities {
        let Some(provider) = registry.provider(kind, name) else {
            continue;
        };
        let part = match plugins.iter().find(|p| *p.name == *provider) {
            // An isolated plugin's crash is an error of the call.
            Some(p) if p.running().is_some() => continue,
            Some(p) if !p.builtin => format!(
                "{kind} `{name}` of plugin `{provider}` ({})",
                p.path.display()
            ),
            _ => format!("{kind} `{name}` of plugin `{provider}`"),
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(CallWatch::enter(&format!(
        "calling {}",
        parts.join(", then ")
    )))
}
