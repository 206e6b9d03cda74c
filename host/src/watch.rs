//! Watching the plugin code the host runs while loading: which plugin it is, whether it
//! has been running for too long, and whether it ended the process.
//!
//! A library's constructors run inside `dlopen`, and its `register` right after. If either
//! never returns, a scan hangs with no word; if either calls `exit`, the process ends and a
//! caller might take the silence for success. While plugin code runs for the host, the
//! host notes what it is running here: a watchdog thread warns once it has run longer than
//! the host's hang warning (Firefox's hang detector does the same for its plugins), and an
//! `atexit` hook turns an exit from inside it into a loud failure (see [`PLUGIN_EXIT_STATUS`]).

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

/// Plugin code is running for the host until this is dropped.
pub(crate) struct Watch(());

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
        if let Some(r) = running.as_mut() {
            r.what = what;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        set(None);
    }
}

fn set(value: Option<Running>) {
    *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) = value;
    CHANGED.notify_all();
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
