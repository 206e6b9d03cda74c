//! Receiving: a whole message, its head and then the rest, or in place (the worker).

use super::*;

impl Channel {
    /// Receives one message into `buf` (cleared first, grown as needed and kept: reuse it, and
    /// no allocation happens once it has held the largest message). Returns its length.
    ///
    /// Waits (spin, then futex) until `deadline`. After [`RecvError::Timeout`] in the middle
    /// of a streamed message, the part received is left in `buf`: calling again with the same
    /// buffer continues it.
    pub fn recv_into(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        self.recv_parts(buf, usize::MAX, None, deadline)
    }

    /// Receives the first `head_len` bytes of the next message into `head` (cleared first;
    /// the whole message if it is shorter) and returns how many bytes of it are still to
    /// come: read them with [`Channel::recv_rest`] before anything else. So a receiver can
    /// check a message's head before it puts a byte of the rest anywhere. Waits as
    /// [`Channel::recv_into`] does (after a timeout, call again with the same `head`).
    pub fn recv_head(
        &mut self,
        head: &mut Vec<u8>,
        head_len: usize,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        self.recv_parts(head, head_len, None, deadline)?;
        Ok(self.rx_remaining.unwrap_or(0) as usize)
    }

    /// Receives the rest of the message [`Channel::recv_head`] began, appended to `tail`,
    /// each byte copied once, straight out of the ring (a reply's payload into the caller's
    /// buffer). `head` is the same buffer, as `recv_head` left it. Returns the message's
    /// whole length. After a timeout, call again with the same buffers, unchanged, to go
    /// on (the host does not: it kills a worker whose reply is late).
    pub fn recv_rest(
        &mut self,
        head: &mut Vec<u8>,
        tail: &mut dyn ByteSink,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        if self.rx_remaining.is_none() {
            return Ok(head.len());
        }
        let head_len = head.len();
        self.recv_parts(head, head_len, Some(tail), deadline)
    }

    /// Receives one message and hands it to `read` **in place** when the whole of it is
    /// already in the ring in one piece, else copied into `buf` first (as
    /// [`Channel::recv_into`]); the ring's room is given back after `read` returns.
    ///
    /// For a side that trusts its peer not to write into a message it has published: the
    /// worker reading its host (its parent, which could as well write into its memory). The
    /// host never reads a worker's message in place.
    ///
    /// # Panics
    /// On the host's side of the channel ([`Channel::create`]'s), where the peer is untrusted.
    pub(crate) fn recv_in_place<R>(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvError> {
        assert!(
            self.side == Side::Worker,
            "only a worker reads its (trusted) host's messages in place"
        );
        if let Some(why) = self.corrupt {
            return Err(RecvError::Corrupt(why));
        }
        if self.rx_remaining.is_none() {
            let len = self.begin_message(deadline)?;
            buf.clear();
            let ring = self.rx_ring();
            let at = (self.rx_head & (self.capacity - 1)) as usize;
            let whole = matches!(self.check(Want::Data(len)), Ok(Some(_)));
            if whole && at + len as usize <= self.capacity as usize {
                // SAFETY: `len` bytes from `at` are inside this ring's data area (checked just
                // above) and were published by the peer, who does not write there again until
                // our head passes them: it is trusted to keep to that (see the doc comment).
                // The slice lives only during `read`, before the head is moved.
                let message =
                    unsafe { std::slice::from_raw_parts(self.data(ring).add(at), len as usize) };
                let result = read(message);
                self.rx_head = self.rx_head.wrapping_add(len);
                self.rx_remaining = None;
                self.publish(ring, R_HEAD, self.rx_head, R_SPACE_WAITING, R_SPACE_SEQ);
                return Ok(result);
            }
        }
        self.recv_parts(buf, usize::MAX, None, deadline)?;
        Ok(read(buf))
    }

    /// Reads the next message's length prefix (waiting for it); the message is then being
    /// received.
    pub(super) fn begin_message(&mut self, deadline: Option<Instant>) -> Result<u32, RecvError> {
        let avail = self.wait(Want::Data(FRAME_HEADER as u32), deadline);
        self.poison_recv(avail)?;
        let mut header = [0u8; FRAME_HEADER];
        self.read_ring(self.rx_ring(), &mut header);
        let len = u32::from_le_bytes(header);
        if len as usize > self.max_message {
            return Err(self.corrupt_now("message length over the limit"));
        }
        self.rx_remaining = Some(len);
        self.rx_tail_received = 0;
        Ok(len)
    }

    pub(super) fn recv_parts(
        &mut self,
        head: &mut Vec<u8>,
        head_len: usize,
        mut tail: Option<&mut dyn ByteSink>,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        if let Some(why) = self.corrupt {
            return Err(RecvError::Corrupt(why));
        }
        let ring = self.rx_ring();
        let (mut remaining, mut received) = match self.rx_remaining {
            Some(r) => (r, head.len() + self.rx_tail_received),
            None => {
                let len = self.begin_message(deadline)?;
                head.clear();
                (len, 0)
            }
        };
        loop {
            self.rx_remaining = Some(remaining);
            if remaining == 0 {
                break;
            }
            if tail.is_none() && head.len() >= head_len {
                // The head is in; the message goes on ([`Channel::recv_rest`]).
                self.publish(ring, R_HEAD, self.rx_head, R_SPACE_WAITING, R_SPACE_SEQ);
                return Ok(received);
            }
            let avail = match self.wait(Want::Data(1), deadline) {
                Ok(avail) => avail,
                Err(e) => {
                    self.publish(ring, R_HEAD, self.rx_head, R_SPACE_WAITING, R_SPACE_SEQ);
                    return Err(self.poison_recv(Err(e)).unwrap_err());
                }
            };
            // Without a tail, only up to the head: the rest waits for `recv_rest`.
            let room = head_len.saturating_sub(head.len());
            let mut n = avail.min(remaining) as usize;
            if tail.is_none() {
                n = n.min(room);
            }
            let to_head = room.min(n);
            if to_head > 0 {
                // SAFETY: `spare(to_head)` is valid for that many writes, and `to_head` is at
                // most the bytes checked readable; `read_ring_raw` initialises exactly those.
                unsafe {
                    let dst = head.spare(to_head);
                    self.read_ring_raw(ring, dst, to_head);
                    head.commit(to_head);
                }
                n -= to_head;
            }
            // Bytes past the head (only with a tail, see above).
            if let (true, Some(tail)) = (n > 0, tail.as_deref_mut()) {
                // SAFETY: as above, for the tail's room.
                unsafe {
                    let dst = tail.spare(n);
                    self.read_ring_raw(ring, dst, n);
                    tail.commit(n);
                }
                self.rx_tail_received += n;
            }
            let taken = to_head + n;
            remaining -= taken as u32;
            received += taken;
            self.publish(ring, R_HEAD, self.rx_head, R_SPACE_WAITING, R_SPACE_SEQ);
        }
        self.rx_remaining = None;
        self.publish(ring, R_HEAD, self.rx_head, R_SPACE_WAITING, R_SPACE_SEQ);
        Ok(received)
    }

    pub(super) fn poison_recv(&mut self, r: Result<u32, WaitError>) -> Result<u32, RecvError> {
        match r {
            Ok(v) => Ok(v),
            Err(WaitError::Corrupt(why)) => Err(self.corrupt_now(why)),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn corrupt_now(&mut self, why: &'static str) -> RecvError {
        self.corrupt = Some(why);
        RecvError::Corrupt(why)
    }
}
