//! `SIGHUP` reloads the isolated plugins of a long-running command (`transform`, `run`).
//!
//! No signal handler: the signal is blocked in every thread ([`block_sighup`], before the
//! first thread starts, so threads and workers inherit the mask) and taken synchronously by
//! one thread with `sigtimedwait`, which then calls [`Host::reload`] for each isolated
//! plugin — ordinary code, not a handler, so it may lock and allocate. Calls go on in the
//! meantime: a reload switches each plugin between two calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use host::Host;

/// How often the reloading thread looks whether the command is done.
const POLL: Duration = Duration::from_millis(100);

/// Set from a `SIGHUP` until its reloads are done ([`reload_pending`]).
static PENDING: AtomicBool = AtomicBool::new(false);

/// Whether a `SIGHUP` was taken and its reloads are not done yet: a command that holds an
/// isolated plugin's worker for a stream of calls (`crate::stream::pipe_isolated`) lets it go
/// meanwhile, so that the reload switches workers between two calls.
pub fn reload_pending() -> bool {
    PENDING.load(Ordering::Acquire)
}

fn sighup_set() -> libc::sigset_t {
    // SAFETY: `sigemptyset` initializes the zeroed set it is given; `sigaddset` adds a valid
    // signal number to it. Neither can fail with these arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks `SIGHUP` in the calling thread, and so in every thread and worker process started
/// from it later: call it first thing, before any thread exists (a `SIGHUP` delivered to a
/// thread that does not block it would end the process).
pub fn block_sighup() {
    let set = sighup_set();
    // SAFETY: `set` is an initialized signal set; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        tracing::warn!(
            "cannot block SIGHUP ({}): it will end the process instead of reloading plugins",
            std::io::Error::from_raw_os_error(rc)
        );
    }
}

/// Runs `body` while a thread waits for `SIGHUP` and, on each, reloads every isolated
/// plugin of `host`, logging `reloaded plugin …` or why a reload was refused (the old
/// worker then serves on). [`block_sighup`] must have been called first.
pub fn reloading_on_sighup<R>(host: &Host, body: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let waiter = std::thread::Builder::new()
            .name("sighup-reload".into())
            .spawn_scoped(scope, || {
                let set = sighup_set();
                let timeout = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: POLL.as_nanos() as libc::c_long,
                };
                while !done.load(Ordering::Acquire) {
                    // SAFETY: `set` and `timeout` are initialized and outlive the call; a
                    // null info pointer is allowed. The signal is blocked in this thread (the
                    // mask is inherited), as `sigtimedwait` requires.
                    let signal =
                        unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
                    if signal == libc::SIGHUP {
                        PENDING.store(true, Ordering::Release);
                        reload_all(host);
                        PENDING.store(false, Ordering::Release);
                    }
                }
            });
        if let Err(e) = &waiter {
            tracing::warn!("cannot start the SIGHUP thread ({e}): SIGHUP will not reload plugins");
        }
        let result = body();
        done.store(true, Ordering::Release);
        result
    })
}

/// Reloads every isolated plugin of `host`, logging each outcome.
fn reload_all(host: &Host) {
    let isolated = plugin_isolate::isolated(host);
    if isolated.is_empty() {
        tracing::info!("SIGHUP: no isolated plugin is loaded, nothing to reload");
        return;
    }
    for plugin in isolated {
        match host.reload(&plugin.name) {
            Ok(report) => tracing::info!(
                "SIGHUP: reloaded plugin `{}` {}",
                plugin.name,
                report.version.as_deref().unwrap_or("")
            ),
            Err(e) => tracing::warn!("SIGHUP: {}", host::text::printable(&e.to_string())),
        }
    }
}
