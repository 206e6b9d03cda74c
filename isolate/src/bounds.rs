//! What a worker may make the host hold: bounded, whatever the worker sends.
//!
//! A worker is untrusted: the plugin in it may write anything to its stderr and (through a
//! corrupted worker) anything to its control socket. The host reads both on threads of its
//! own, and what those threads hold is bounded:
//!
//! - **stderr**: read in pieces, split into lines; one line may hold at most
//!   [`MAX_STDERR_LINE`] bytes (the longest a log line could usefully be);
//! - **the control socket**: frames are bounded by the protocol ([`plugin_protocol::MAX_FRAME_LEN`],
//!   64 MiB); log records are logged as they arrive, their message and target cut to
//!   [`MAX_LOG_TEXT`] bytes ([`cut`]); any other message waits for the caller in a queue of
//!   at most [`MAX_QUEUED`] messages and [`MAX_QUEUED_BYTES`] bytes of frames, except that a
//!   version-1 reply (up to a frame) may wait alone (a worker never has more than one answer
//!   outstanding, so more is a flood). The host so holds at most one queued frame, the frame
//!   being read, and the message being decoded — not 64 frames of 64 MiB.
//!
//! A worker that passes a bound has broken the protocol: it is killed at once (through its
//! pidfd, from the reading thread) and the call in flight, or the next, fails `protocol-error`
//! naming the bound ([`Bounds::broken`]).

use std::borrow::Cow;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The most bytes of one line a worker may write to stderr.
pub(crate) const MAX_STDERR_LINE: usize = 64 * 1024;
/// The most control messages (other than log records) waiting for the caller.
pub(crate) const MAX_QUEUED: usize = 64;
/// The most bytes of frames (other than log records) waiting for the caller. The largest
/// message a worker legitimately sends there, besides a version-1 reply (admitted alone, see
/// [`Bounds::admit`]), is its `registered` report: at most
/// [`host::limits::MAX_CAPABILITIES`] (4096) capabilities whose names the worker's own
/// checks held to [`host::limits::MAX_CAPABILITY_NAME`] (128) characters, about 0.6 MiB
/// (2.2 MiB if every character took 4 bytes); a `refused` report's message is cut to
/// [`MAX_LOG_TEXT`] by the worker (and again by the host, which shows it: the worker's cut
/// is its code's to skip). 4 MiB is a little above all of them.
pub(crate) const MAX_QUEUED_BYTES: usize = 4 << 20;
/// The most bytes of a plugin log record's message (and of its target) the host logs: the
/// stderr line bound. Escaping control characters ([`host::text::printable`]) may make the
/// logged text up to 10 times longer, so the cut comes first.
pub(crate) const MAX_LOG_TEXT: usize = MAX_STDERR_LINE;

/// The bound a worker broke, if it did, and the means to kill it for that from any thread.
pub(crate) struct Bounds {
    broken: Mutex<Option<String>>,
    /// Bytes of frames in the queue (added by the reading thread, taken by the caller).
    queued: AtomicUsize,
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
            queued: AtomicUsize::new(0),
            pidfd,
        }
    }

    /// Whether a message of `len` bytes may join the queue (then counted): if the queue stays
    /// within [`MAX_QUEUED_BYTES`], or if it is empty and the message is the one answer a
    /// version-1 worker may have outstanding (`alone`: a reply, up to a frame). Called by the
    /// one thread that fills the queue.
    pub(crate) fn admit(&self, len: usize, alone: bool) -> bool {
        let queued = self.queued.load(Ordering::Acquire);
        if queued + len > MAX_QUEUED_BYTES && !(alone && queued == 0) {
            return false;
        }
        self.queued.fetch_add(len, Ordering::AcqRel);
        true
    }

    /// A message of `len` bytes left the queue.
    pub(crate) fn taken(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
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

/// Text a worker sent, as the host shows it: [`cut`] to `max` bytes first (a worker's own
/// cut is its code's to skip, and escaping makes text longer), then made printable.
pub(crate) fn shown(text: &str, max: usize) -> String {
    host::text::printable(&cut(text, max)).into_owned()
}

/// `text` cut to at most `max` bytes (at a character boundary), the cut marked as
/// "… (N bytes cut)"; borrowed when it fits.
pub(crate) fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} bytes cut)",
        &text[..end],
        text.len() - end
    ))
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
            queued: AtomicUsize::new(0),
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

    #[test]
    fn queued_bytes_are_bounded_but_a_reply_may_wait_alone() {
        let bounds = Bounds::of(u32::MAX); // no such process: no pidfd
        assert!(bounds.admit(MAX_QUEUED_BYTES - 10, false));
        assert!(!bounds.admit(11, false), "over the budget");
        assert!(
            !bounds.admit(64 << 20, true),
            "a large reply waits alone only"
        );
        bounds.taken(MAX_QUEUED_BYTES - 10);
        assert!(!bounds.admit(MAX_QUEUED_BYTES + 1, false));
        assert!(
            bounds.admit(64 << 20, true),
            "a version-1 reply up to a frame"
        );
        assert!(!bounds.admit(1, false), "nothing after it");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_so() {
        assert!(matches!(cut("short", 5), Cow::Borrowed("short")));
        assert_eq!(cut("abcdef", 4), "abcd… (2 bytes cut)");
        // 'é' is two bytes: the cut falls before it, not inside it.
        assert_eq!(cut("abcé", 4), "abc… (2 bytes cut)");
        let long = "x".repeat(1 << 20);
        let cut = cut(&long, MAX_LOG_TEXT);
        assert!(cut.len() < MAX_LOG_TEXT + 32);
        assert!(cut.ends_with(&format!("… ({} bytes cut)", (1 << 20) - MAX_LOG_TEXT)));
    }
}
