//! The rings underneath: their control words, waiting on them (spin, then futex), and
//! copying bytes in and out across the wrap.

use super::*;

impl Channel {
    pub(super) fn tx_ring(&self) -> usize {
        self.side.index()
    }

    pub(super) fn rx_ring(&self) -> usize {
        1 - self.side.index()
    }

    /// The shared word at `offset` in the header.
    pub(super) fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset % 4 == 0 && offset + 4 <= HEADER_BYTES);
        // SAFETY: `offset` is one of this module's constant header offsets: 4-aligned and inside
        // the first page of a live mapping of at least `HEADER_BYTES` bytes (it lives until
        // `drop`, longer than `&self`). The memory is only ever accessed atomically by this
        // code, in both processes; a hostile peer's plain stores are, on the hardware, aligned
        // 4-byte stores too, and whatever value results is treated as untrusted.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    pub(super) fn ring_word(&self, ring: usize, field: usize) -> &AtomicU32 {
        self.word(RING_BASE + ring * RING_STRIDE + field)
    }

    pub(super) fn peer_closed(&self) -> bool {
        let peer = 1 - self.side.index();
        self.word(OFF_CLOSED + 4 * peer).load(SeqCst) != 0
    }

    /// Whether the watched peer process has terminated (its pidfd is readable).
    pub(super) fn peer_dead(&self) -> bool {
        let Some(fd) = &self.peer else { return false };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid `pollfd`, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// The condition, checked against the peer's (untrusted) position: `Some(amount)` if met.
    pub(super) fn check(&self, want: Want) -> Result<Option<u32>, WaitError> {
        match want {
            Want::Data(need) => {
                let tail = self.ring_word(self.rx_ring(), R_TAIL).load(SeqCst);
                let avail = tail.wrapping_sub(self.rx_head);
                if avail > self.capacity {
                    return Err(WaitError::Corrupt("peer's write position is out of range"));
                }
                Ok((avail >= need).then_some(avail))
            }
            Want::Space(need) => {
                let head = self.ring_word(self.tx_ring(), R_HEAD).load(SeqCst);
                let used = self.tx_tail.wrapping_sub(head);
                if used > self.capacity {
                    return Err(WaitError::Corrupt("peer's read position is out of range"));
                }
                let free = self.capacity - used;
                Ok((free >= need).then_some(free))
            }
        }
    }

    /// Waits until `want` holds: spins for `self.spin`, then sleeps on the ring's sequence word
    /// in slices, checking the peer's closed flag and process between them.
    pub(super) fn wait(&self, want: Want, deadline: Option<Instant>) -> Result<u32, WaitError> {
        if let Some(v) = self.check(want)? {
            return Ok(v);
        }
        let (seq, waiting) = match want {
            Want::Data(_) => (
                self.ring_word(self.rx_ring(), R_DATA_SEQ),
                self.ring_word(self.rx_ring(), R_DATA_WAITING),
            ),
            Want::Space(_) => (
                self.ring_word(self.tx_ring(), R_SPACE_SEQ),
                self.ring_word(self.tx_ring(), R_SPACE_WAITING),
            ),
        };
        if !self.spin.is_zero() {
            // Busy-wait first, then yield the CPU between checks: on a loaded machine the peer
            // may be waiting for this very core, and yielding lets it run.
            let start = Instant::now();
            let mut i = 0u32;
            loop {
                if i < PURE_SPINS {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                if let Some(v) = self.check(want)? {
                    return Ok(v);
                }
                i = i.wrapping_add(1);
                if i % 16 == 0 {
                    let now = Instant::now();
                    if now.duration_since(start) >= self.spin || deadline.is_some_and(|d| now >= d)
                    {
                        break;
                    }
                }
            }
        }
        loop {
            let now = Instant::now();
            let mut slice = LIVENESS_SLICE;
            if let Some(d) = deadline {
                if now >= d {
                    return match self.check(want)? {
                        Some(v) => Ok(v),
                        None if self.peer_gone() => Err(WaitError::PeerGone),
                        None => Err(WaitError::Timeout),
                    };
                }
                slice = slice.min(d - now);
            }
            let expected = seq.load(SeqCst);
            waiting.store(1, SeqCst);
            match self.check(want) {
                Ok(None) => {}
                Ok(Some(v)) => {
                    waiting.store(0, SeqCst);
                    return Ok(v);
                }
                Err(e) => {
                    waiting.store(0, SeqCst);
                    return Err(e);
                }
            }
            if self.peer_closed() {
                waiting.store(0, SeqCst);
                return Err(WaitError::PeerGone);
            }
            let timed_out = futex_wait(seq, expected, slice);
            waiting.store(0, SeqCst);
            if let Some(v) = self.check(want)? {
                return Ok(v);
            }
            // A whole slice without news: is the peer's process still there? (Only then: a
            // poll per wake-up would cost a system call per message.)
            if timed_out && self.peer_dead() {
                return Err(WaitError::PeerGone);
            }
        }
    }

    /// Stores our new position and wakes the peer if it is asleep on the matching word.
    pub(super) fn publish(&self, ring: usize, pos: usize, value: u32, waiting: usize, seq: usize) {
        self.ring_word(ring, pos).store(value, SeqCst);
        if self.ring_word(ring, waiting).load(SeqCst) != 0 {
            let seq = self.ring_word(ring, seq);
            seq.fetch_add(1, SeqCst);
            futex_wake(seq);
        }
    }

    pub(super) fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: both rings' data areas lie inside the mapping: `HEADER_BYTES + 2 × capacity`
        // is its length (checked in `from_fd`, made so in `create`).
        unsafe {
            self.base
                .as_ptr()
                .add(HEADER_BYTES + ring * self.capacity as usize)
        }
    }

    /// Copies `src` into the send ring at our tail (room checked by the caller).
    pub(super) fn write_ring(&mut self, ring: usize, src: &[u8]) {
        let cap = self.capacity as usize;
        let at = (self.tx_tail & (self.capacity - 1)) as usize;
        let first = src.len().min(cap - at);
        // SAFETY: `at < cap` and `first <= cap - at`, and `src.len() - first <= at` because the
        // caller never writes more than the free room (≤ cap); so both copies stay inside this
        // ring's data area. Raw copies: no reference to shared memory is made, and the source is
        // private memory that cannot overlap the mapping.
        unsafe {
            let data = self.data(ring);
            std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, src.len() - first);
        }
        self.tx_tail = self.tx_tail.wrapping_add(src.len() as u32);
    }

    pub(super) fn read_ring(&mut self, ring: usize, dst: &mut [u8]) {
        // SAFETY: `dst` is valid for writes of its own length.
        unsafe { self.read_ring_raw(ring, dst.as_mut_ptr(), dst.len()) }
    }

    /// Copies `n` bytes from the receive ring at our head into `dst` and advances the head.
    ///
    /// # Safety
    /// `dst` is valid for `n` byte writes, and `n` is at most the bytes checked readable.
    pub(super) unsafe fn read_ring_raw(&mut self, ring: usize, dst: *mut u8, n: usize) {
        let cap = self.capacity as usize;
        debug_assert!(n <= cap);
        let at = (self.rx_head & (self.capacity - 1)) as usize;
        let first = n.min(cap - at);
        // SAFETY: as in `write_ring`, `n ≤ cap` keeps both source ranges inside this ring's
        // data area; `dst` is the caller's, valid for `n` bytes, and private memory.
        unsafe {
            let data = self.data(ring);
            std::ptr::copy_nonoverlapping(data.add(at), dst, first);
            std::ptr::copy_nonoverlapping(data, dst.add(first), n - first);
        }
        self.rx_head = self.rx_head.wrapping_add(n as u32);
    }
}
