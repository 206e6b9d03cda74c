//! A worker's process tree: whatever a plugin starts dies with its worker.
//!
//! A plugin may fork (a helper, a `sleep` from a shell-out, a daemon it forgot to wait for).
//! Killing the worker by pid alone would leave those processes running with init as their
//! parent. So:
//!
//! - each worker is the leader of a **process group of its own** (`setpgid(0, 0)` between
//!   fork and exec, [`own_group`]); its children inherit the group. The host kills the whole
//!   group ([`kill_group`]) whenever it kills or reaps a worker (timeout, protocol error, a
//!   crash, a graceful stop), always *before* reaping the worker, so that the group's id
//!   cannot have been reused;
//! - the host may die without a chance to do that (`SIGKILL`): the worker then dies of its
//!   `PR_SET_PDEATHSIG`, and its **guard** ([`start_guard`]) — a small process in the
//!   worker's group, started (by a double fork, so that it is not the worker's child) before
//!   the plugin is loaded, which runs no plugin code and holds none of the worker's
//!   descriptors — sees the worker end (through its pidfd) and kills the group, itself
//!   included. The guard also covers a worker that crashes or exits between calls.
//!
//! What it does not cover: a process that leaves the group on purpose (`setsid`,
//! `setpgid`). Only a cgroup or a PID namespace contains those; isolation here is about
//! crashes and hangs, not about a plugin that tries to escape (see the book, docs/src/applications/isolation.md).

use std::io;

/// Between fork and exec in the child: makes it the leader of a process group of its own.
/// Async-signal-safe (one system call).
pub(crate) fn own_group() -> io::Result<()> {
    // SAFETY: `setpgid` takes no pointers; the result is checked.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `SIGKILL` to the process group `pid` leads. Call it only while the leader is the
/// caller's child and not yet reaped (a zombie keeps its group's id from being reused).
pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 1 {
        // SAFETY: `kill` takes no pointers; a group that no longer exists is `ESRCH`, ignored.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// Whether the child `pid` has ended, without reaping it (`waitid` with `WNOWAIT`): it can
/// still be waited for, and its group killed, afterwards.
pub(crate) fn has_ended(pid: u32) -> bool {
    let id: libc::id_t = pid;
    // SAFETY: a zeroed `siginfo_t` is a valid value for `waitid` to fill in; it is ours.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable `siginfo_t`; the result is checked.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: `waitid` filled in `info` (or left it zeroed: no child changed state).
    r != 0 || unsafe { info.si_pid() } != 0
}

/// In the worker, before the plugin is loaded: starts the guard that kills this worker's
/// process group once the worker has ended, however it ended. Does nothing unless the worker
/// leads its own group (as the host starts it): the guard must never kill a group it does not
/// own, such as a shell's.
///
/// The guard is started by a double fork, so it is **not the worker's child**: plugin code
/// that waits for all its children (`while wait(NULL) > 0`) is not blocked by it, and the
/// plugin cannot move it into another group (`setpgid` works only on oneself and one's own
/// children). The intermediate process exits at once and is reaped here, before this returns.
///
/// Why the guard's kill is sound: the guard stays in the worker's group, and Linux never hands
/// out a number that is still some live process's group id. So while the guard lives in group
/// `worker`, the number `worker` names the worker (alive or a zombie) or nothing — never a
/// new process — and `kill(0, SIGKILL)` from the guard hits exactly the worker's group. The
/// guard checks `getpgrp() == worker` before that kill and does nothing if it was moved.
pub(crate) fn start_guard() -> io::Result<()> {
    // SAFETY: `getpid` and `getpgrp` take no arguments and cannot fail.
    let (worker, group) = unsafe { (libc::getpid(), libc::getpgrp()) };
    if worker != group {
        return Ok(());
    }
    // SAFETY: `fork` takes no arguments. The child (the intermediate) only forks again and
    // `_exit`s; its child runs only `guard`, which makes async-signal-safe system calls and
    // allocates nothing (another thread may have held the allocator's lock at the fork), and
    // never returns.
    let intermediate = match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        // SAFETY: in the intermediate: `fork` and `_exit` are async-signal-safe; `_exit`
        // never returns.
        0 => unsafe {
            if libc::fork() == 0 {
                guard(worker)
            }
            libc::_exit(0)
        },
        pid => pid,
    };
    // The intermediate is our child: reaped here, so the plugin never sees it.
    loop {
        // SAFETY: `waitpid` on our own child with a null status pointer.
        let r = unsafe { libc::waitpid(intermediate, std::ptr::null_mut(), 0) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The guard's body: closes every inherited descriptor, waits for `worker` to end, kills its
/// group (which the guard is in, see [`start_guard`]), and exits.
fn guard(worker: libc::pid_t) -> ! {
    // SAFETY: only system calls without Rust-side state: `close_range`/`close` on
    // descriptors this process owns (the worker's copies stay open in the worker),
    // `pidfd_open`, `poll` on one valid `pollfd`, `kill`, `getpgrp`, `nanosleep` with a valid
    // timespec, and `_exit`, which never returns.
    unsafe {
        // Nothing of the worker's stays open here: the host sees the worker's end of
        // file when the worker ends, not when the guard does.
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..4096 {
                libc::close(fd);
            }
        }
        // The number `worker` cannot have been reused while we are in its group (see
        // `start_guard`): a pidfd opened now names the worker, or fails if it is reaped.
        let pidfd = libc::syscall(libc::SYS_pidfd_open, worker, 0);
        if pidfd >= 0 {
            let mut pfd = libc::pollfd {
                fd: pidfd as libc::c_int,
                events: libc::POLLIN,
                revents: 0,
            };
            while libc::poll(&mut pfd, 1, -1) < 0 {}
        } else if *libc::__errno_location() == libc::ENOSYS {
            // No pidfd (Linux before 5.3): wait until the worker is reaped (a worker whose
            // host is gone is reaped by init; a zombie's host kills the group itself).
            let slice = libc::timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            while libc::kill(worker, 0) == 0 {
                libc::nanosleep(&slice, std::ptr::null_mut());
            }
        }
        // Moved out of the worker's group (only a parent or an ancestor reaper could): the
        // group is no longer known to be the worker's, so it is left alone.
        if libc::getpgrp() == worker {
            libc::kill(0, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}
