//! The fast transport between the host and a plugin worker process: two single-producer,
//! single-consumer byte rings in one shared `memfd`, with a futex wake-up.
//!
//! [`Channel::create`] makes the region on the host side and returns the descriptor to hand the
//! worker (inherited across `exec` with [`pass_fd`], or sent over a Unix socket); the worker maps
//! it with [`Channel::from_fd`]. Both ends then [`send`](Channel::send) and
//! [`recv_into`](Channel::recv_into) whole messages; nothing is serialized here — a message is
//! bytes, its encoding is the protocol's business. A message can also be sent from several
//! pieces ([`send_parts`](Channel::send_parts): a frame's head and a payload kept elsewhere)
//! and received in two ([`recv_head`](Channel::recv_head), checked, then
//! [`recv_rest`](Channel::recv_rest) straight into the caller's buffer), so that a payload is
//! copied once each way.
//!
//! # Layout of the shared region
//!
//! One `memfd` of `4096 + 2 × capacity` bytes, sealed with `F_SEAL_SHRINK | F_SEAL_GROW |
//! F_SEAL_SEAL` before it is handed out (so neither side can truncate it under the other's
//! mapping, which would turn accesses into `SIGBUS`). All words are little-endian `u32`s, each
//! group on its own 64-byte cache line:
//!
//! | offset | contents |
//! |---|---|
//! | `0x000` | magic `"PHSM"`, layout version (1), ring capacity in bytes (a power of two, 4 KiB–1 GiB) |
//! | `0x040` | closed flags: host closed, worker closed (set on drop) |
//! | `0x080` | ring 0 (host → worker) control, 4 lines: |
//! | `+0x00` | `tail` (bytes ever written, wrapping) and `data_seq` — written by the producer |
//! | `+0x40` | `head` (bytes ever consumed, wrapping) and `space_seq` — written by the consumer |
//! | `+0x80` | `data_waiting` — the consumer is (about to be) asleep on `data_seq` |
//! | `+0xC0` | `space_waiting` — the producer is (about to be) asleep on `space_seq` |
//! | `0x180` | ring 1 (worker → host) control, the same four lines |
//! | `0x1000` | ring 0 data, `capacity` bytes |
//! | `0x1000 + capacity` | ring 1 data, `capacity` bytes |
//!
//! A ring is a byte stream of frames: a 4-byte length, then that many payload bytes, both
//! wrapping around the end of the data area. Positions are free-running `u32` counters, the
//! byte at position `p` lives at `p & (capacity - 1)`, and `tail - head` (wrapping) is the number
//! of bytes readable. A message longer than the ring is **streamed**: the producer writes what
//! fits, publishes it, and waits for room; the consumer copies out what has arrived and frees
//! it. So any message up to the receiver's [`max_message`](Channel::set_max_message) (default
//! [`DEFAULT_MAX_MESSAGE`]) goes through, whatever the ring size; a larger one is refused by the
//! sender ([`SendError::TooLarge`]) and is [`RecvError::Corrupt`] for the receiver.
//!
//! # Wake-up protocol
//!
//! Waiting for data (or, for a producer, for room) first **spins** for a short while
//! ([`DEFAULT_SPIN`], see [`Channel::set_spin`]) re-reading the peer's position — busy for the
//! first few hundred checks, then yielding the CPU between checks (on a loaded machine the peer
//! may be queued behind us). A peer that answers within that time costs no futex call at all,
//! which is what keeps a round trip in the low microseconds. Then it sleeps on the ring's sequence word with a **shared** (not
//! `FUTEX_PRIVATE`) `FUTEX_WAIT`, since the waker is another process:
//!
//! 1. waiter: read `seq`; set `waiting = 1`; re-check the condition and the peer's closed flag;
//!    `FUTEX_WAIT(seq, value read)` for at most [`LIVENESS_SLICE`] or the deadline;
//! 2. publisher: store the new position; if `waiting` is set, increment `seq` and
//!    `FUTEX_WAKE` it.
//!
//! All these accesses are sequentially consistent, so either the waiter's re-check sees the new
//! position or the publisher sees `waiting` (and then the kernel's compare of `seq` makes a late
//! `FUTEX_WAIT` return at once): no lost wake-up. When nobody waits, publishing is one store and
//! one load — no system call.
//!
//! # Peer death
//!
//! A peer that drops its [`Channel`] sets its closed flag and wakes every word: the other side
//! gets [`RecvError::PeerGone`] / [`SendError::PeerGone`] at once (after the messages already in
//! the ring). A peer that *dies* (killed, segfault, abort) cannot say so; give the channel the
//! peer's process with [`Channel::watch_pid`] (or a pidfd with [`Channel::watch_pidfd`]): every
//! sleep is cut in slices of at most [`LIVENESS_SLICE`], and after each slice that passes without
//! news (and when the deadline passes) the pidfd is polled — a terminated process makes it
//! readable, and the wait ends with `PeerGone` rather than `Timeout`. So a caller learns of a
//! death within one slice (10 ms) even without a deadline, at no cost per message; a supervisor that reaps the
//! worker elsewhere sees the same `PeerGone` from the call in flight. Without a watched process
//! only the closed flag and the caller's deadline end a wait.
//!
//! # What the host trusts: nothing
//!
//! The worker can write anything, at any time, anywhere in the region. So:
//! - the layout (capacity, offsets, size) is the creator's private copy, never re-read;
//! - each side keeps its own position privately and only *reads* the peer's; a peer position
//!   that claims more than `capacity` bytes readable (or free) is `Corrupt`;
//! - a frame length above the receiver's own `max_message` is `Corrupt`; the payload is copied
//!   out into the caller's buffer before anything looks at it (the host makes no reference into
//!   shared memory, only raw-pointer copies, so a concurrent scribble changes bytes, never
//!   invariants; only the worker, which trusts its host, reads a call in place, with
//!   `recv_in_place`, which refuses to run on the host's side);
//! - every offset is masked with `capacity - 1`, so no value from the peer can move an access
//!   outside the mapping;
//! - `Corrupt` is sticky: the channel is unusable afterwards (drop it, kill the worker);
//! - flags and sequence words the peer scribbles on can only cost wake-up system calls or end a
//!   wait early (each wait re-checks its condition) — never memory safety, never a panic.
//!
//! The worker side ([`Channel::from_fd`]) validates the header it is given (magic, version,
//! capacity against the file size, the seals) and makes the same checks on the host's
//! positions.
//!
//! # Cost
//!
//! Per message: one copy in (`send`, `send_parts`), one copy out (`recv_into`, `recv_head` + `recv_rest`;
//! none for the worker's `recv_in_place` when the message lies in one piece), a handful of atomic accesses,
//! no allocation once the receive buffer has grown to the largest message, and no system call
//! when the peer is awake (spinning). A sleeping peer costs one `FUTEX_WAKE` on the sender's
//! side and one `FUTEX_WAIT` return on its own. Spinning burns up to [`DEFAULT_SPIN`] of CPU per
//! wait; set it to zero with [`Channel::set_spin`] where latency matters less than cores.
//!
//! The sending side must not be used from two threads at once, nor the receiving side; methods
//! take `&mut self`, so a [`Channel`] is used by one thread at a time (it is `Send`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How long a wait re-reads the peer's position before going to sleep on the futex.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Busy-wait iterations before a waiting side starts yielding the CPU between checks.
const PURE_SPINS: u32 = 256;

/// The longest single futex sleep: between two, the watched peer process is checked.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(10);

/// The largest message a channel accepts unless told otherwise ([`Channel::set_max_message`]).
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// The smallest ring capacity (one page).
pub const MIN_CAPACITY: usize = 4096;

/// The largest ring capacity.
pub const MAX_CAPACITY: usize = 1 << 30;

const MAGIC: u32 = u32::from_le_bytes(*b"PHSM");
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 4096;
const LINE: usize = 64;
pub(crate) const FRAME_HEADER: usize = 4;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CAPACITY: usize = 8;
const OFF_CLOSED: usize = LINE; // + 4 × side
const RING_BASE: usize = 2 * LINE;
const RING_STRIDE: usize = 4 * LINE;
const R_TAIL: usize = 0;
const R_DATA_SEQ: usize = 4;
const R_HEAD: usize = LINE;
const R_SPACE_SEQ: usize = LINE + 4;
const R_DATA_WAITING: usize = 2 * LINE;
const R_SPACE_WAITING: usize = 3 * LINE;
const _: () = assert!(RING_BASE + 2 * RING_STRIDE <= HEADER_BYTES);

/// Which end of the channel this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The creator ([`Channel::create`]): sends on ring 0, receives on ring 1.
    Host,
    /// The peer ([`Channel::from_fd`]): sends on ring 1, receives on ring 0.
    Worker,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Host => 0,
            Side::Worker => 1,
        }
    }
}

/// Why [`Channel::recv_into`] returned without a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The deadline passed. If it passed in the middle of a streamed message, the part received
    /// so far stays in the buffer: call again with the same buffer to go on.
    #[error("no message before the deadline")]
    Timeout,
    /// The peer closed its end or its process ended (see [`Channel::watch_pid`]), and no
    /// message is left in the ring.
    #[error("the peer closed the channel or died")]
    PeerGone,
    /// The peer wrote something impossible into the shared region; the channel is unusable.
    #[error("corrupt shared channel: {0}")]
    Corrupt(&'static str),
}

/// Why [`Channel::send`] did not send a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The deadline passed while waiting for room in the ring. If part of the message was
    /// already written, the channel is [`Broken`](SendError::Broken) for further sends.
    #[error("no room in the ring before the deadline")]
    Timeout,
    /// The peer closed its end or its process ended.
    #[error("the peer closed the channel or died")]
    PeerGone,
    /// The peer wrote something impossible into the shared region; the channel is unusable.
    #[error("corrupt shared channel: {0}")]
    Corrupt(&'static str),
    /// The message is longer than this channel's `max_message`.
    #[error("message of {len} bytes over the limit of {max}")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An earlier send stopped in the middle of a message (timeout): the stream is out of step.
    #[error("an earlier send stopped in the middle of a message")]
    Broken,
}

/// What a wait ended with, other than its condition being met.
enum WaitError {
    Timeout,
    PeerGone,
    Corrupt(&'static str),
}

impl From<WaitError> for RecvError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout => RecvError::Timeout,
            WaitError::PeerGone => RecvError::PeerGone,
            WaitError::Corrupt(why) => RecvError::Corrupt(why),
        }
    }
}

impl From<WaitError> for SendError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout => SendError::Timeout,
            WaitError::PeerGone => SendError::PeerGone,
            WaitError::Corrupt(why) => SendError::Corrupt(why),
        }
    }
}

/// Which condition a wait is for.
#[derive(Clone, Copy)]
enum Want {
    /// At least this many bytes readable in the receive ring.
    Data(u32),
    /// At least this many bytes free in the send ring.
    Space(u32),
}

/// A growable byte buffer a message is copied into straight out of the ring
/// ([`Channel::recv_rest`]): `Vec<u8>`, and `RVec<u8>` (a transform's output).
///
/// # Safety
/// `spare(n)` must return a pointer valid for writing `n` bytes just past the buffer's
/// contents, and `commit(n)` (after those bytes were written) must make them part of the
/// contents.
pub unsafe trait ByteSink {
    /// Room for `n` more bytes after the contents: where to write them.
    fn spare(&mut self, n: usize) -> *mut u8;
    /// Adds the `n` bytes written at [`ByteSink::spare`] to the contents.
    ///
    /// # Safety
    /// Those `n` bytes were written, after a `spare(n)` (or larger) with no change since.
    unsafe fn commit(&mut self, n: usize);
    /// The contents.
    fn contents(&self) -> &[u8];
    /// Keeps the first `len` bytes of the contents.
    fn truncate(&mut self, len: usize);
    /// Appends `bytes` (a copy).
    fn put(&mut self, bytes: &[u8]) {
        let dst = self.spare(bytes.len());
        // SAFETY: `spare` made `dst` valid for `bytes.len()` writes past the contents, which
        // cannot overlap `bytes` (borrowed, not part of this buffer's spare room); then exactly
        // those bytes are committed.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            self.commit(bytes.len());
        }
    }
}

// SAFETY: `reserve(n)` guarantees capacity for `n` more elements, so the pointer past the
// length is valid for `n` writes; `set_len` then covers only written bytes.
unsafe impl ByteSink for Vec<u8> {
    fn contents(&self) -> &[u8] {
        self
    }
    fn truncate(&mut self, len: usize) {
        Vec::<u8>::truncate(self, len)
    }
    fn spare(&mut self, n: usize) -> *mut u8 {
        self.reserve(n);
        // SAFETY: `len <= capacity`: the offset stays inside (or one past) the allocation.
        unsafe { self.as_mut_ptr().add(self.len()) }
    }
    unsafe fn commit(&mut self, n: usize) {
        // SAFETY: the caller wrote the `n` bytes after the length, reserved by `spare`.
        unsafe { self.set_len(self.len() + n) }
    }
}

// SAFETY: as for `Vec<u8>`: `RVec::reserve` has the same guarantee.
unsafe impl ByteSink for abi_stable::std_types::RVec<u8> {
    fn contents(&self) -> &[u8] {
        self
    }
    fn truncate(&mut self, len: usize) {
        abi_stable::std_types::RVec::<u8>::truncate(self, len)
    }
    fn spare(&mut self, n: usize) -> *mut u8 {
        self.reserve(n);
        // SAFETY: `len <= capacity`: the offset stays inside (or one past) the allocation.
        unsafe { self.as_mut_ptr().add(self.len()) }
    }
    unsafe fn commit(&mut self, n: usize) {
        // SAFETY: the caller wrote the `n` bytes after the length, reserved by `spare`.
        unsafe { self.set_len(self.len() + n) }
    }
}

/// One end of a shared-memory channel. See the [module documentation](self).
pub struct Channel {
    base: NonNull<u8>,
    len: usize,
    /// The ring size, from this side's own knowledge (never re-read from the region).
    capacity: u32,
    side: Side,
    /// Our send position (the ring's `tail`), kept here; the shared copy is only written.
    tx_tail: u32,
    /// Our receive position (the ring's `head`), kept here; the shared copy is only written.
    rx_head: u32,
    /// Payload bytes still to come of the message being received (streamed), if one is.
    rx_remaining: Option<u32>,
    /// Of that message, the bytes already put in a split receive's tail.
    rx_tail_received: usize,
    max_message: usize,
    spin: Duration,
    peer: Option<OwnedFd>,
    corrupt: Option<&'static str>,
    tx_broken: bool,
}

// SAFETY: the mapping belongs to the process, not to a thread; `Channel` holds no thread-bound
// state, and every access to the region goes through `&mut self` (or the drop).
unsafe impl Send for Channel {}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("side", &self.side)
            .field("capacity", &self.capacity)
            .field("corrupt", &self.corrupt)
            .finish_non_exhaustive()
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Maps `len` bytes of `fd`, shared and writable.
fn map(fd: &OwnedFd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping chosen by the kernel (no address hint, no MAP_FIXED), so it
    // aliases nothing in this process; the result is checked against MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| invalid("mmap returned null"))
}

impl Channel {
    /// Creates the shared region with two rings of `capacity` bytes each (a power of two,
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`]) and returns the host's end and the descriptor to
    /// give the worker (close-on-exec; see [`pass_fd`]).
    pub fn create(capacity: usize) -> io::Result<(Channel, OwnedFd)> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring capacity must be a power of two between 4 KiB and 1 GiB",
            ));
        }
        let len = HEADER_BYTES + 2 * capacity;
        // SAFETY: a plain system call with a NUL-terminated name; the result is checked.
        let raw = cvt(unsafe {
            libc::memfd_create(
                c"plugin-host-shm".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        })?;
        // SAFETY: `raw` is a descriptor just returned to us and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain system calls on our own descriptor; results checked.
        unsafe {
            cvt(libc::ftruncate(fd.as_raw_fd(), len as libc::off_t))?;
            cvt(libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ))?;
        }
        let channel = Channel::new(map(&fd, len)?, len, capacity as u32, Side::Host);
        channel.word(OFF_MAGIC).store(MAGIC, SeqCst);
        channel.word(OFF_VERSION).store(VERSION, SeqCst);
        channel.word(OFF_CAPACITY).store(capacity as u32, SeqCst);
        Ok((channel, fd))
    }

    /// Maps the region behind `fd` (from [`Channel::create`], in the worker) and returns the
    /// worker's end. The header is validated: magic, version, a capacity that matches the file's
    /// size, and the shrink seal.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Channel> {
        // SAFETY: `fstat` writes into the zeroed struct we pass; result checked.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
            st.st_size
        };
        // SAFETY: a plain system call on a descriptor we own; result checked.
        let seals = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(invalid(
                "shared channel region is not sealed against shrinking",
            ));
        }
        let len = usize::try_from(size).map_err(|_| invalid("bad shared region size"))?;
        if !(HEADER_BYTES + 2 * MIN_CAPACITY..=HEADER_BYTES + 2 * MAX_CAPACITY).contains(&len) {
            return Err(invalid("shared channel region has an impossible size"));
        }
        let base = map(&fd, len)?;
        // Capacity 0 until validated: `Drop` only needs `len`.
        let mut channel = Channel::new(base, len, 0, Side::Worker);
        if channel.word(OFF_MAGIC).load(SeqCst) != MAGIC {
            return Err(invalid("not a plugin-host shared channel (bad magic)"));
        }
        if channel.word(OFF_VERSION).load(SeqCst) != VERSION {
            return Err(invalid("unsupported shared channel layout version"));
        }
        let capacity = channel.word(OFF_CAPACITY).load(SeqCst) as usize;
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || HEADER_BYTES + 2 * capacity != len
        {
            return Err(invalid("shared channel capacity does not match its size"));
        }
        channel.capacity = capacity as u32;
        // Both positions start at 0: ring 0's head and ring 1's tail are this side's to move.
        Ok(channel)
    }

    fn new(base: NonNull<u8>, len: usize, capacity: u32, side: Side) -> Channel {
        Channel {
            base,
            len,
            capacity,
            side,
            tx_tail: 0,
            rx_head: 0,
            rx_remaining: None,
            rx_tail_received: 0,
            max_message: DEFAULT_MAX_MESSAGE,
            spin: DEFAULT_SPIN,
            peer: None,
            corrupt: None,
            tx_broken: false,
        }
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The capacity of each ring, in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Sets the largest message this end sends or accepts (default [`DEFAULT_MAX_MESSAGE`],
    /// at most `u32::MAX`). A longer incoming frame is [`RecvError::Corrupt`].
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max.min(u32::MAX as usize);
    }

    /// Sets how long a wait spins before sleeping (default [`DEFAULT_SPIN`]; zero: never spin).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Watches the peer's process through a pidfd (`pidfd_open`): once it has terminated, waits
    /// end with `PeerGone` within [`LIVENESS_SLICE`].
    pub fn watch_pidfd(&mut self, pidfd: OwnedFd) {
        self.peer = Some(pidfd);
    }

    /// Watches the peer's process by id (opens a pidfd for it; Linux 5.3 or later). Call it
    /// while the process cannot have been reaped yet (e.g. the host's own unwaited child, or the
    /// worker's parent checked against `getppid`).
    pub fn watch_pid(&mut self, pid: u32) -> io::Result<()> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| invalid("bad pid"))?;
        // SAFETY: `pidfd_open(pid, 0)` has no memory arguments; the result is checked.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor (close-on-exec), owned by nobody else.
        self.peer = Some(unsafe { OwnedFd::from_raw_fd(raw as RawFd) });
        Ok(())
    }

    /// Whether the peer has closed its end or (if watched) its process has ended.
    pub fn peer_gone(&self) -> bool {
        self.peer_closed() || self.peer_dead()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.capacity != 0 {
            self.word(OFF_CLOSED + 4 * self.side.index())
                .store(1, SeqCst);
            for ring in 0..2 {
                for seq in [R_DATA_SEQ, R_SPACE_SEQ] {
                    let word = self.ring_word(ring, seq);
                    word.fetch_add(1, SeqCst);
                    futex_wake(word);
                }
            }
        }
        // SAFETY: `base`/`len` are exactly the mapping made in `create`/`from_fd`; no reference
        // into it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Lets a child spawned from `cmd` inherit `fd` under the same number, which is returned (pass
/// it to the child, e.g. in an argument or the environment). The descriptor stays close-on-exec
/// in this process, so concurrently spawned children do not get it; `cmd` holds it (an
/// `OwnedFd` is closed here, a shared one released, when `cmd` is dropped).
pub fn pass_fd(cmd: &mut Command, fd: impl AsRawFd + Send + Sync + 'static) -> RawFd {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked child before `exec` and only calls `fcntl`, which
    // is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0))?;
            Ok(())
        });
    }
    raw
}

mod futex;
mod recv;
mod ring;

use futex::{futex_wait, futex_wake};
mod send;

#[cfg(test)]
mod tests;
