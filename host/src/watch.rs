//! Watching the plugin code the host runs while loading: which plugin it is, whether it
//! has been running for too long, and whether it ended the process.
//!
//! A library's constructors run inside `dlopen`, and its `register` right after. If either
//! never returns, a scan hangs with no word; if either calls `exit`, the process ends and a
//! caller might take the silence for success. While plugin code runs for the host, the
//! host notes what it is running here: a watchdog thread warns once it has run longer than
//! the host's hang warning (Firefox's hang detector does the same for its plugins), and an
//! `atexit` hook turns an exit from inside it into a loud failure (see [`PLUGIN_EXIT_STATUS`]),
//! and a crash inside it (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGABRT`) prints which
//! plugin was running before the process dies as it would have.

use std::sync::{Condvar, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

/// The exit status of a process that a plugin tried to end (with `exit`) while the host was
/// loading or registering it: never 0, so a scan cut short never looks like success.
pub const PLUGIN_EXIT_STATUS: i32 = 3;

struct Running {
    /// What the plugin is being run for, e.g. "registering plugin `x` (/p/libx.so)".
    what: String,
    since: Instant,
    warn_after: Option<Duration>,
    warned: bool,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();
/// Whether the watchdog waits with no deadline (and so must be woken for a new one).
static IDLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Plugin code is running for the host until this is dropped.
pub(crate) struct Watch(());

/// The crash message for what runs now (NUL-free bytes, leaked while in use; null when no
/// plugin code runs): a signal handler may only read memory, not lock or allocate.
#[cfg(unix)]
static CRASH_NOTE: std::sync::atomic::AtomicPtr<Vec<u8>> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Notes that plugin code runs now for `what`; warns if it runs for longer than
/// `warn_after`.
pub(crate) fn enter(what: String, warn_after: Option<Duration>) -> Watch {
    static START: Once = Once::new();
    START.call_once(|| {
        // SAFETY: `on_exit` is an `extern "C" fn()` that never unwinds (see there).
        #[cfg(unix)]
        if unsafe { libc::atexit(on_exit) } != 0 {
            tracing::debug!("cannot register the exit hook: a plugin's exit() will go unnoticed");
        }
        if let Err(e) = std::thread::Builder::new()
            .name("plugin-hang-watch".into())
            .spawn(watchdog)
        {
            tracing::debug!("cannot start the hang watchdog: {e}");
        }
    });
    #[cfg(unix)]
    crash::note(&what);
    set(Some(Running {
        what,
        since: Instant::now(),
        warn_after,
        warned: false,
    }));
    Watch(())
}

impl Watch {
    /// The same plugin moves on to another step (e.g. from loading to registering).
    pub(crate) fn step(&self, what: String) {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        #[cfg(unix)]
        crash::note(&what);
        if let Some(r) = running.as_mut() {
            r.what = what;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        #[cfg(unix)]
        crash::clear();
        set(None);
    }
}

/// Naming the plugin a fatal signal came from.
#[cfg(unix)]
mod crash {
    use std::sync::atomic::Ordering;
    use std::sync::Once;

    use super::CRASH_NOTE;

    const SIGNALS: [(libc::c_int, &str); 5] = [
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGABRT, "SIGABRT"),
    ];

    /// The actions that were installed before ours, to hand each signal on to.
    static mut PREVIOUS: [Option<libc::sigaction>; 5] = [None; 5];

    /// Makes `what` the note a fatal signal prints; installs the handlers once.
    pub(super) fn note(what: &str) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(install);
        let text = format!(
            "error: fatal signal while {}: the plugin crashed the process\n",
            crate::text::printable(what)
        );
        let new = Box::into_raw(Box::new(text.into_bytes()));
        let old = CRASH_NOTE.swap(new, Ordering::SeqCst);
        free(old);
    }

    pub(super) fn clear() {
        free(CRASH_NOTE.swap(std::ptr::null_mut(), Ordering::SeqCst));
    }

    fn free(note: *mut Vec<u8>) {
        if !note.is_null() {
            // SAFETY: every non-null pointer stored in CRASH_NOTE came from `Box::into_raw`
            // and was swapped out exactly once, by this thread: it is freed once. A signal
            // handler that read it before the swap has finished with it: handlers run on the
            // thread they interrupt (loading is single-threaded), to completion.
            drop(unsafe { Box::from_raw(note) });
        }
    }

    fn install() {
        for (i, (signal, _)) in SIGNALS.iter().enumerate() {
            // SAFETY: a zeroed `sigaction` is a valid value to fill in; `on_fatal` has the
            // `SA_SIGINFO` handler signature; `PREVIOUS` is written here once, inside a
            // `Once`, before any handler that reads it can run.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*signal, &action, &mut previous) == 0 {
                    (*std::ptr::addr_of_mut!(PREVIOUS))[i] = Some(previous);
                }
            }
        }
    }

    /// Prints the note (if plugin code is running), then hands the signal to the action that
    /// was there before (Rust's stack-overflow report, or the default: the process dies with
    /// the same signal as without us).
    extern "C" fn on_fatal(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        let note = CRASH_NOTE.load(Ordering::SeqCst);
        let name = SIGNALS.iter().position(|(s, _)| *s == signal);
        // SAFETY: only async-signal-safe calls: `write`, `sigaction`; the note is a live
        // boxed Vec (see `free`); `PREVIOUS` is no longer written once handlers are installed.
        unsafe {
            if !note.is_null() {
                if let Some(i) = name {
                    let label = SIGNALS[i].1;
                    libc::write(2, label.as_ptr().cast(), label.len());
                    libc::write(2, b" -- ".as_ptr().cast(), 4);
                }
                let bytes = &*note;
                libc::write(2, bytes.as_ptr().cast(), bytes.len());
            }
            let previous = name.and_then(|i| (*std::ptr::addr_of!(PREVIOUS))[i]);
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
                    // Default action: restore it. A fault re-runs the faulting instruction when
                    // this returns; a signal that was sent (`abort`, `kill`: `si_code` <= 0) is
                    // raised again. Either way the process dies of this signal.
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(signal, &action, std::ptr::null_mut());
                    if info.is_null() || (*info).si_code <= 0 {
                        libc::raise(signal);
                    }
                }
            }
        }
    }
}

/// Sets what runs now. The watchdog is woken only when it waits with no deadline and a
/// deadline appears: a scan of many plugins costs no wake-up per plugin.
fn set(value: Option<Running>) {
    let wake = value.as_ref().is_some_and(|r| r.warn_after.is_some());
    *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) = value;
    if wake && IDLE.load(std::sync::atomic::Ordering::SeqCst) {
        CHANGED.notify_all();
    }
}

fn watchdog() {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let wait = match running.as_mut() {
            Some(r) if !r.warned && r.warn_after.is_some() => {
                let limit = r.warn_after.unwrap_or_default();
                let elapsed = r.since.elapsed();
                if elapsed >= limit {
                    r.warned = true;
                    tracing::warn!(
                        "{} has not returned after {:.1} s; the host is waiting for it (a \
                         plugin that never returns hangs the host: remove it from the plugin \
                         directory)",
                        crate::text::printable(&r.what),
                        elapsed.as_secs_f64()
                    );
                    None
                } else {
                    Some(limit - elapsed)
                }
            }
            _ => None,
        };
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
    }
}

#[cfg(unix)]
/// Runs at `exit`: if plugin code was running for the host, the process is being ended by
/// the plugin. Say which, and exit with [`PLUGIN_EXIT_STATUS`] instead of the plugin's status.
extern "C" fn on_exit() {
    // Nothing here may unwind: `try_lock` and `write` do not panic, and the message is
    // written with `write(2)` (the standard streams may be locked by the exiting thread).
    let running = match RUNNING.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    let Some(r) = running.as_ref() else {
        return;
    };
    let message = format!(
        "error: the process was ended by plugin code while {}: it called exit(); the work was \
         not finished (exit status {PLUGIN_EXIT_STATUS}); remove the plugin from the plugin \
         directory\n",
        crate::text::printable(&r.what)
    );
    // SAFETY: writing a valid buffer to the standard error descriptor, then ending the
    // process without running further exit handlers (the status must stay ours).
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(PLUGIN_EXIT_STATUS);
    }
}
