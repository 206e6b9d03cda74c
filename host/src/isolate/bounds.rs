//! What a worker may make the host hold: bounded, whatever the worker sends.
//!
//! A worker is untrusted: the plugin in it may write anything to its stderr and (through a
//! corrupted worker) anything to its control socket. The host reads both on threads of its
//! own, and what those threads hold is bounded:
//!
//! - **stderr**: read in pieces, split into lines; one line may hold at most
//!   [`MAX_STDERR_LINE`] bytes (the longest a log line could usefully be);
//! - **the control socket**: frames are bounded by the protocol ([`plugin_protocol::MAX_FRAME_LEN`]);
//!   log records are logged as they arrive; any other message waits for the caller in a
//!   queue of at most [`MAX_QUEUED`] messages (a worker never has more than one answer
//!   outstanding, so a longer queue is a flood).
//!
//! A worker that passes a bound has broken the protocol: it is killed at once (through its
//! pidfd, from the reading thread) and the call in flight, or the next, fails `protocol-error`
//! naming the bound ([`Bounds::broken`]).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The most bytes of one line a worker may write to stderr.
pub(crate) const MAX_STDERR_LINE: usize = 64 * 1024;
/// The most control messages (other than log records) waiting for the caller.
pub(crate) const MAX_QUEUED: usize = 64;

/// The bound a worker broke, if it did, and the means to kill it for that from any thread.
pub(crate) struct Bounds {
    broken: Mutex<Option<String>>,
    /// The worker's pidfd (`None` without `pidfd_open`: the reading thread then only stops
    /// reading, and the call in flight ends at its deadline, with the same message).
    pidfd: Option<OwnedFd>,
}

impl Bounds {
    /// The bounds of the worker `pid`, the caller's unwaited child (its pid cannot have been
    /// reused).
    pub(crate) fn of(pid: u32) -> Bounds {
        // SAFETY: `pidfd_open(pid, 0)` takes no pointers; the result is checked.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let pidfd = (raw >= 0).then(|| {
            // SAFETY: the kernel just gave us this descriptor (close-on-exec); ours alone.
            unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) }
        });
        Bounds {
            broken: Mutex::new(None),
            pidfd,
        }
    }

    /// The worker broke a bound (`what` says which, e.g. "wrote … to stderr"): noted (the
    /// first one counts) and the worker killed.
    pub(crate) fn break_with(&self, what: String) {
        let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        if broken.is_none() {
            tracing::debug!("{what}: killing the worker");
            *broken = Some(what);
        }
        drop(broken);
        if let Some(fd) = &self.pidfd {
            // SAFETY: `pidfd_send_signal` on our open pidfd, no `siginfo`; a process that has
            // already ended is `ESRCH`, ignored. A pidfd never names another process.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                )
            };
        }
    }

    /// Which bound the worker broke, if it did: e.g. "wrote a line of more than 65536 bytes
    /// to stderr (the limit)".
    pub(crate) fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Reads a worker's stderr until it ends, handing each non-empty line (without its end of
/// line) to `line`; a line longer than [`MAX_STDERR_LINE`] breaks the bound and ends the
/// reading.
pub(crate) fn read_lines(mut stderr: impl Read, bounds: &Bounds, mut line: impl FnMut(&[u8])) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match stderr.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &chunk[..n];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if pending.len() + end > MAX_STDERR_LINE {
                return too_long(bounds);
            }
            pending.extend_from_slice(&rest[..end]);
            line(&pending);
            pending.clear();
            rest = &rest[end + 1..];
        }
        if pending.len() + rest.len() > MAX_STDERR_LINE {
            return too_long(bounds);
        }
        pending.extend_from_slice(rest);
    }
    if !pending.is_empty() {
        line(&pending);
    }
}

fn too_long(bounds: &Bounds) {
    bounds.break_with(format!(
        "wrote a line of more than {MAX_STDERR_LINE} bytes to stderr (the limit of one line)"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> (Vec<String>, Option<String>) {
        let bounds = Bounds {
            broken: Mutex::new(None),
            pidfd: None,
        };
        let mut got = Vec::new();
        read_lines(input, &bounds, |l| {
            got.push(String::from_utf8_lossy(l).into_owned())
        });
        (got, bounds.broken())
    }

    #[test]
    fn lines_are_split_and_a_line_over_the_bound_breaks_it() {
        assert_eq!(
            lines(b"a\nbb\n\nlast"),
            (
                vec!["a".into(), "bb".into(), "".into(), "last".into()],
                None
            )
        );
        let mut long = vec![b'x'; MAX_STDERR_LINE];
        long.push(b'\n');
        assert_eq!(lines(&long).1, None, "a line of exactly the bound is fine");
        let flood = vec![b'x'; 4 * MAX_STDERR_LINE];
        let (got, broken) = lines(&flood);
        assert!(got.is_empty());
        assert!(broken.unwrap().contains("more than 65536 bytes to stderr"));
        let mut after = b"fine\n".to_vec();
        after.extend(vec![b'y'; MAX_STDERR_LINE + 1]);
        after.push(b'\n');
        let (got, broken) = lines(&after);
        assert_eq!(got, vec!["fine".to_owned()]);
        assert!(broken.is_some());
    }
}
