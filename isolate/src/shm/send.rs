//! Sending: a whole message, or one made of several parts, into the sending ring.

use super::*;

impl Channel {
    /// Sends one message, streaming it through the ring if it is longer than the room there.
    /// Waits (spin, then futex) for room until `deadline` (`None`: no deadline, but a watched
    /// peer's death still ends the wait).
    pub fn send(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        self.send_parts(&[msg], deadline)
    }

    /// Sends one message made of `parts`, one after the other (a frame's head and a payload
    /// kept elsewhere): each byte is copied once, straight into the ring. As [`Channel::send`]
    /// otherwise.
    pub fn send_parts(
        &mut self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        if let Some(why) = self.corrupt {
            return Err(SendError::Corrupt(why));
        }
        if self.tx_broken {
            return Err(SendError::Broken);
        }
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if len > self.max_message {
            return Err(SendError::TooLarge {
                len,
                max: self.max_message,
            });
        }
        if self.peer_closed() {
            return Err(SendError::PeerGone);
        }
        let ring = self.tx_ring();
        let header = (len as u32).to_le_bytes();
        // Batch pieces: wait for room for the whole frame, or a quarter of the ring if larger.
        let mut sent_header = false;
        let mut left = len;
        let (mut part, mut at) = (0, 0);
        loop {
            let want = left + if sent_header { 0 } else { FRAME_HEADER };
            let want = want.min(self.capacity as usize / 4).max(1) as u32;
            let mut free = match self.wait(Want::Space(want), deadline) {
                Ok(free) => free as usize,
                Err(e) => {
                    if sent_header {
                        self.tx_broken = true;
                    }
                    return Err(self.poison_send(e.into()));
                }
            };
            if !sent_header {
                self.write_ring(ring, &header);
                free -= FRAME_HEADER;
                sent_header = true;
            }
            while free > 0 && part < parts.len() {
                let rest = &parts[part][at..];
                let n = free.min(rest.len());
                self.write_ring(ring, &rest[..n]);
                (free, left, at) = (free - n, left - n, at + n);
                if at == parts[part].len() {
                    (part, at) = (part + 1, 0);
                }
            }
            self.publish(ring, R_TAIL, self.tx_tail, R_DATA_WAITING, R_DATA_SEQ);
            if left == 0 {
                return Ok(());
            }
        }
    }

    pub(super) fn poison_send(&mut self, e: SendError) -> SendError {
        if let SendError::Corrupt(why) = e {
            self.corrupt = Some(why);
        }
        e
    }
}
