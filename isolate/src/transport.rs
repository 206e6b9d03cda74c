//! How frames move over the control socket: a small pair of traits. The control socket
//! carries the handshake, `load` and log records, and all calls of a worker that speaks only
//! protocol version 1; version-2 calls go over the shared-memory channel instead (see
//! `spawn`'s module documentation), moved by the calling thread without these traits, since
//! they read replies in place rather than as owned [`Message`]s.
//!
//! The socket transport writes each frame whole ([`plugin_protocol::encode`]) and reads into
//! a buffer until [`plugin_protocol::decode`] finds a whole frame.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use plugin_protocol::{decode, DecodeError, Message};

/// The sending half: one encoded frame at a time.
pub(crate) trait Sender: Send {
    /// Sends one encoded frame (prefix included).
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;

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
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.write_all(frame)
    }

    fn close(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

const INITIAL_CAPACITY: usize = 64 * 1024;
/// A receive buffer emptied with more capacity than this gives it back.
const SHRINK_ABOVE: usize = 1 << 20;

/// Reads frames from a Unix stream socket.
pub(crate) struct SocketReceiver {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed by decoded frames.
    start: usize,
}

impl SocketReceiver {
    pub(crate) fn new(stream: UnixStream) -> Self {
        SocketReceiver {
            stream,
            buf: Vec::with_capacity(INITIAL_CAPACITY),
            start: 0,
        }
    }
}

impl Receiver for SocketReceiver {
    fn recv_sized(&mut self) -> Result<Option<(Message, usize)>, RecvError> {
        loop {
            match decode(&self.buf[self.start..]) {
                Ok((message, used)) => {
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                        // One large frame does not keep its buffer for the worker's life.
                        if self.buf.capacity() > SHRINK_ABOVE {
                            self.buf.shrink_to(INITIAL_CAPACITY);
                        }
                    }
                    return Ok(Some((message, used - plugin_protocol::PREFIX_LEN)));
                }
                Err(DecodeError::Incomplete { needed }) => {
                    // Keep only the unread bytes, then read at least up to `needed` (bounded
                    // by the decoder's frame limit, checked before `Incomplete` is returned).
                    self.buf.drain(..self.start);
                    self.start = 0;
                    let have = self.buf.len();
                    let want = needed.max(have + 4096).min(needed.max(have) + 64 * 1024);
                    self.buf.resize(want, 0);
                    let n = loop {
                        match self.stream.read(&mut self.buf[have..]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            other => break other,
                        }
                    };
                    let n = match n {
                        Ok(n) => n,
                        Err(e) => {
                            self.buf.truncate(have);
                            return Err(RecvError::Io(e));
                        }
                    };
                    self.buf.truncate(have + n);
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
        worker_tx.send(&frame).unwrap();
        host_tx.close();
        // What was sent before is still read, then the stream ends.
        assert_eq!(host_rx.recv().unwrap(), Some(log));
        assert_eq!(host_rx.recv().unwrap(), None);
        // And the worker's end sees it closed.
        assert!(worker_tx.send(&frame).is_err());
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
                tx.send(piece).unwrap();
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
        tx.send(&[3, 0, 0, 0, 99, 1, 2]).unwrap();
        assert!(matches!(
            rx.recv(),
            Err(RecvError::Garbage(DecodeError::UnknownTag(99)))
        ));
        let ((mut tx, _), (_, mut rx)) = pair().unwrap();
        tx.send(&[10, 0, 0, 0, 9]).unwrap();
        drop(tx);
        assert!(matches!(rx.recv(), Err(RecvError::Garbage(_))));
    }
}
