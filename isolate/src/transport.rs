//! How frames move over the control socket: a small pair of traits. The control socket
//! carries the handshake, `load` and log records, and all calls of a worker that speaks only
//! protocol version 1; version-2 calls go over the shared-memory channel instead (see
//! `spawn`'s module documentation), moved by the calling thread without these traits, since
//! they read replies in place rather than as owned [`Message`]s.
//!
//! The socket transport writes each frame whole ([`plugin_protocol::encode`]) and reads into
//! a buffer until [`plugin_protocol::decode`] finds a whole frame.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use plugin_protocol::{decode, DecodeError, Message};

/// The sending half: one encoded frame at a time.
pub(crate) trait Sender: Send {
    /// Sends one encoded frame (prefix included), giving up with [`io::ErrorKind::TimedOut`]
    /// at `deadline` (a peer that stops reading must not hold the sender past it; the
    /// stream may then end inside a frame, so whoever gets that error ends the stream).
    fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> io::Result<()>;

    /// Ends the stream both ways, for this side's every reader too, whoever else still
    /// holds the other end (a process the worker started in a session of its own).
    fn close(&mut self) {}
}

/// The receiving half.
pub(crate) trait Receiver: Send {
    /// Blocks for the next message and the length of its frame (after the prefix); `Ok(None)`
    /// at a clean end of stream (between frames).
    fn recv_sized(&mut self) -> Result<Option<(Message, usize)>, RecvError>;

    /// Blocks for the next message; `Ok(None)` at a clean end of stream (between frames).
    fn recv(&mut self) -> Result<Option<Message>, RecvError> {
        Ok(self.recv_sized()?.map(|(message, _)| message))
    }
}

/// Why a receiver stopped.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// Reading failed (the stream ended inside a frame counts as garbage, not as this).
    Io(io::Error),
    /// The bytes are not a valid frame.
    Garbage(DecodeError),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Io(e) => write!(f, "reading from the worker failed: {e}"),
            RecvError::Garbage(e) => write!(f, "{e}"),
        }
    }
}

/// Length-prefixed frames over a Unix stream socket.
pub(crate) struct SocketSender(pub UnixStream);

impl Sender for SocketSender {
    fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        let fd = self.0.as_raw_fd();
        let mut rest = frame;
        while !rest.is_empty() {
            // SAFETY: `rest` is a live slice of `rest.len()` bytes and `fd` the socket this
            // sender owns. MSG_NOSIGNAL: a peer that has closed its end is EPIPE here, never
            // SIGPIPE for the whole process (an application may not ignore SIGPIPE as Rust's
            // runtime does); MSG_DONTWAIT: a full socket buffer waits below, by the deadline.
            let sent = unsafe {
                libc::send(
                    fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if let Ok(sent) = usize::try_from(sent) {
                rest = &rest[sent.min(rest.len())..];
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => writable_by(fd, deadline)?,
                _ => return Err(e),
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Waits until `fd` can take more bytes, or fails with [`io::ErrorKind::TimedOut`] at
/// `deadline` (none: as long as it takes).
fn writable_by(fd: std::os::fd::RawFd, deadline: Option<Instant>) -> io::Result<()> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the worker stopped reading what the host sends",
                    ));
                }
                // Rounded up, so a wait never ends just before the deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if ready > 0 {
            // Writable, or an error or hang-up the next send reports.
            return Ok(());
        }
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

const INITIAL_CAPACITY: usize = 64 * 1024;
/// A receive buffer emptied with more capacity than this gives it back.
const SHRINK_ABOVE: usize = 1 << 20;

/// Reads frames from a Unix stream socket.
pub(crate) struct SocketReceiver {
    stream: UnixStream,
    /// Room to read into: `buf[..filled]` holds bytes read, the rest was zeroed once when
    /// the buffer grew and is read into, never zeroed again (a worker trickling a large frame
    /// a byte at a time costs a read each, not a fill of the frame's length each).
    buf: Vec<u8>,
    /// How much of `buf` holds bytes read.
    filled: usize,
    /// Bytes of `buf` already consumed by decoded frames.
    start: usize,
}

impl SocketReceiver {
    pub(crate) fn new(stream: UnixStream) -> Self {
        SocketReceiver {
            stream,
            buf: Vec::with_capacity(INITIAL_CAPACITY),
            filled: 0,
            start: 0,
        }
    }
}

impl Receiver for SocketReceiver {
    fn recv_sized(&mut self) -> Result<Option<(Message, usize)>, RecvError> {
        loop {
            match decode(&self.buf[self.start..self.filled]) {
                Ok((message, used)) => {
                    self.start += used;
                    if self.start == self.filled {
                        self.start = 0;
                        self.filled = 0;
                        // One large frame does not keep its buffer for the worker's life.
                        if self.buf.len() > SHRINK_ABOVE {
                            self.buf.truncate(INITIAL_CAPACITY);
                            self.buf.shrink_to(INITIAL_CAPACITY);
                        }
                    }
                    return Ok(Some((message, used - plugin_protocol::PREFIX_LEN)));
                }
                Err(DecodeError::Incomplete { needed }) => {
                    // Keep only the unread bytes, then read towards `needed` (bounded by the
                    // decoder's frame limit, checked before `Incomplete` is returned). The
                    // buffer grows at most twofold a read, so it holds no more than twice
                    // what the worker has sent of a frame.
                    self.buf.copy_within(self.start..self.filled, 0);
                    self.filled -= self.start;
                    self.start = 0;
                    let have = self.filled;
                    let want = needed
                        .min((2 * have).max(have + INITIAL_CAPACITY))
                        .max(have + 4096);
                    if self.buf.len() < want {
                        self.buf.resize(want, 0);
                    }
                    let n = loop {
                        match self.stream.read(&mut self.buf[have..]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            other => break other,
                        }
                    };
                    let n = n.map_err(RecvError::Io)?;
                    self.filled = have + n;
                    if n == 0 {
                        return if have == 0 {
                            Ok(None)
                        } else {
                            Err(RecvError::Garbage(DecodeError::Malformed(
                                "the stream ended inside a frame",
                            )))
                        };
                    }
                }
                Err(e) => return Err(RecvError::Garbage(e)),
            }
        }
    }
}

/// A connected pair of socket transports (both halves of both ends), for tests.
#[cfg(test)]
pub(crate) fn pair() -> io::Result<(
    (SocketSender, SocketReceiver),
    (SocketSender, SocketReceiver),
)> {
    let (a, b) = UnixStream::pair()?;
    Ok((
        (SocketSender(a.try_clone()?), SocketReceiver::new(a)),
        (SocketSender(b.try_clone()?), SocketReceiver::new(b)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_protocol::{encode, Payload};

    #[test]
    fn closing_ends_this_sides_reader_while_the_other_end_stays_open() {
        // The host's end (a sender and a reader on one socket), and the worker's, kept open
        // as a process the worker left behind would keep it.
        let ((mut host_tx, mut host_rx), (mut worker_tx, _worker_rx)) = pair().unwrap();
        let log = Message::Log {
            level: plugin_protocol::Level::Info,
            target: "t".into(),
            message: "the last words".into(),
        };
        let mut frame = Vec::new();
        encode(&log, &mut frame);
        worker_tx.send(&frame, None).unwrap();
        host_tx.close();
        // What was sent before is still read, then the stream ends.
        assert_eq!(host_rx.recv().unwrap(), Some(log));
        assert_eq!(host_rx.recv().unwrap(), None);
        // And the worker's end sees it closed.
        assert!(worker_tx.send(&frame, None).is_err());
    }

    #[test]
    fn frames_cross_whole_split_and_back_to_back() {
        let ((mut tx, _), (_, mut rx)) = pair().unwrap();
        let big = Message::Call {
            id: 7,
            kind: "transform".into(),
            name: "t".into(),
            payload: Payload::Bytes(vec![42; 300_000]),
        };
        let mut frames = Vec::new();
        encode(&Message::Shutdown, &mut frames);
        encode(&big, &mut frames);
        encode(&Message::Shutdown, &mut frames);
        let writer = std::thread::spawn(move || {
            // In small pieces, to cross frame boundaries.
            for piece in frames.chunks(1000) {
                tx.send(piece, None).unwrap();
            }
        });
        assert_eq!(rx.recv().unwrap(), Some(Message::Shutdown));
        assert_eq!(rx.recv().unwrap(), Some(big));
        assert_eq!(rx.recv().unwrap(), Some(Message::Shutdown));
        writer.join().unwrap();
        // All senders gone: a clean end.
        assert!(matches!(rx.recv(), Ok(None)));
    }

    #[test]
    fn garbage_and_a_cut_frame_are_errors() {
        let ((mut tx, _), (_, mut rx)) = pair().unwrap();
        tx.send(&[3, 0, 0, 0, 99, 1, 2], None).unwrap();
        assert!(matches!(
            rx.recv(),
            Err(RecvError::Garbage(DecodeError::UnknownTag(99)))
        ));
        let ((mut tx, _), (_, mut rx)) = pair().unwrap();
        tx.send(&[10, 0, 0, 0, 9], None).unwrap();
        drop(tx);
        assert!(matches!(rx.recv(), Err(RecvError::Garbage(_))));
    }

    /// The CPU time this thread has used.
    fn thread_cpu() -> std::time::Duration {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        assert_eq!(ok, 0);
        std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[test]
    fn a_large_frame_trickled_a_byte_at_a_time_costs_the_reader_little() {
        // A worker announces a frame of 32 MiB and sends its bytes one by one: each read
        // used to fill the whole missing part of the frame with zeros again (32 MiB a byte).
        let ((mut tx, _), (_, mut rx)) = pair().unwrap();
        let writer = std::thread::spawn(move || {
            tx.send(&(32u32 << 20).to_le_bytes(), None).unwrap();
            for _ in 0..200 {
                tx.send(&[0], None).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
        });
        let before = thread_cpu();
        assert!(matches!(rx.recv(), Err(RecvError::Garbage(_))));
        let used = thread_cpu() - before;
        writer.join().unwrap();
        // A fill of 32 MiB a read took about as long as the writer's pauses (most of 0.6 s);
        // 200 small reads take a millisecond or so.
        assert!(used < std::time::Duration::from_millis(100), "{used:?}");
        // And the buffer holds about what was sent, not the frame's announced length.
        assert!(rx.buf.len() < 1 << 20, "{}", rx.buf.len());
    }

    #[test]
    fn a_peer_that_stops_reading_fails_the_send_at_its_deadline() {
        let ((mut tx, _), (_, _rx)) = pair().unwrap();
        // Far more than a socket's buffer, never read.
        let frame = vec![7u8; 16 << 20];
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_millis(200);
        let e = tx.send(&frame, Some(deadline)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_peer_gone_is_an_error_without_sigpipe() {
        let ((mut tx, _), (peer_tx, peer_rx)) = pair().unwrap();
        drop((peer_tx, peer_rx));
        // SIGPIPE blocked in this thread only: a write that raised it leaves it pending
        // here (Linux does not discard a blocked signal even when it is ignored).
        // SAFETY: signal sets on the stack, this thread's mask, restored below.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let e = tx.send(b"four", None).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            assert!(!raised, "the send raised SIGPIPE");
        }
    }
}
