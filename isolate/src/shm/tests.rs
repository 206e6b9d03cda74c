//! Tests of the shared-memory channel: in one process across threads, across a real process
//! boundary (this test binary re-run as the peer), streaming, deadlines, peer death, and a
//! hostile peer scribbling on the region.

use super::*;
use std::process::{Child, Stdio};

/// Set in the environment of this test binary re-run as the peer: `FD,MODE`.
const CHILD_ENV: &str = "PLUGIN_HOST_SHM_TEST_CHILD";

fn soon(ms: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(ms))
}

/// A message whose bytes depend on its index and position.
fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect()
}

/// Both ends in this process (the "worker" maps the same memfd).
fn pair(capacity: usize) -> (Channel, Channel) {
    let (host, fd) = Channel::create(capacity).unwrap();
    let worker = Channel::from_fd(fd).unwrap();
    (host, worker)
}

fn echo(mut ch: Channel) {
    let mut buf = Vec::new();
    loop {
        match ch.recv_into(&mut buf, None) {
            Ok(_) => ch.send(&buf, None).unwrap(),
            Err(RecvError::PeerGone) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

/// Spawns this test binary as the peer, running [`child_helper`] in `mode`.
fn spawn_child(capacity: usize, mode: &str) -> (Channel, Child) {
    let (mut host, fd) = Channel::create(capacity).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    let raw = pass_fd(&mut cmd, fd);
    cmd.args([
        "--exact",
        "shm::tests::child_helper",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, format!("{raw},{mode}"))
    .stdout(Stdio::null());
    let child = cmd.spawn().unwrap();
    drop(cmd); // closes our copy of the descriptor: the child holds the region now
    host.watch_pid(child.id()).unwrap();
    (host, child)
}

/// The peer's side, when this binary is re-run by [`spawn_child`]; does nothing otherwise.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child_helper() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (fd, mode) = spec.split_once(',').unwrap();
    // SAFETY: the parent passed this descriptor number for us to own (see `pass_fd`); nothing
    // else in this freshly started process uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) };
    let mut ch = Channel::from_fd(fd).unwrap();
    // SAFETY: no preconditions.
    let parent = unsafe { libc::getppid() };
    ch.watch_pid(parent as u32).unwrap();
    match mode {
        "echo" => echo(ch),
        "echo-nospin" => {
            ch.set_spin(Duration::ZERO);
            echo(ch)
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn round_trip_across_threads() {
    let (mut host, worker) = pair(4096);
    let peer = std::thread::spawn(move || echo(worker));
    let mut buf = Vec::new();
    for i in 0..3000 {
        let msg = pattern(i, (i * 13) % 700);
        host.send(&msg, soon(5000)).unwrap();
        let n = host.recv_into(&mut buf, soon(5000)).unwrap();
        assert_eq!(n, msg.len());
        assert_eq!(buf, msg, "message {i}");
    }
    // Empty messages are messages.
    host.send(&[], None).unwrap();
    assert_eq!(host.recv_into(&mut buf, soon(5000)), Ok(0));
    drop(host);
    peer.join().unwrap();
}

#[test]
fn round_trip_across_processes() {
    let (mut host, mut child) = spawn_child(4096, "echo");
    let mut buf = Vec::new();
    for i in 0..2000 {
        let msg = pattern(i, 64 + i % 100);
        host.send(&msg, soon(10_000)).unwrap();
        host.recv_into(&mut buf, soon(10_000)).unwrap();
        assert_eq!(buf, msg, "message {i}");
    }
    drop(host);
    // The child sees the closed flag and returns from its echo loop.
    assert!(child.wait().unwrap().success());
}

#[test]
fn futex_wake_ups_cross_the_process_boundary() {
    // No spinning on either side: every message is a FUTEX_WAKE to a sleeping process. A lost
    // wake-up would cost a whole liveness slice (10 ms): 300 round trips would take 6 s.
    let (mut host, mut child) = spawn_child(4096, "echo-nospin");
    host.set_spin(Duration::ZERO);
    let mut buf = Vec::new();
    host.send(b"warm-up", soon(10_000)).unwrap();
    host.recv_into(&mut buf, soon(10_000)).unwrap();
    let start = Instant::now();
    for i in 0..300 {
        let msg = pattern(i, 64);
        host.send(&msg, soon(10_000)).unwrap();
        host.recv_into(&mut buf, soon(10_000)).unwrap();
        assert_eq!(buf, msg);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "300 round trips took {took:?}"
    );
    drop(host);
    assert!(child.wait().unwrap().success());
}

#[test]
fn large_messages_stream_through_a_small_ring() {
    let (mut host, mut child) = spawn_child(4096, "echo");
    let mut buf = Vec::new();
    for (i, len) in [4092, 4093, 4096, 3 * 4096 + 123, 1 << 20, 5 << 20]
        .into_iter()
        .enumerate()
    {
        let msg = pattern(i, len);
        host.send(&msg, soon(20_000)).unwrap();
        assert_eq!(host.recv_into(&mut buf, soon(20_000)), Ok(len));
        assert!(buf == msg, "message of {len} bytes came back different");
    }
    drop(host);
    assert!(child.wait().unwrap().success());
}

#[test]
fn recv_times_out() {
    let (mut host, _worker) = pair(4096);
    let mut buf = Vec::new();
    let start = Instant::now();
    assert_eq!(host.recv_into(&mut buf, soon(50)), Err(RecvError::Timeout));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn stalled_stream_times_out_on_both_sides() {
    let (mut host, mut worker) = pair(4096);
    // Nobody reads: the sender fills the ring, then times out mid-message.
    let msg = pattern(1, 3 * 4096);
    assert_eq!(worker.send(&msg, soon(50)), Err(SendError::Timeout));
    assert_eq!(worker.send(b"next", soon(50)), Err(SendError::Broken));
    // The receiver gets the part written, then times out, keeping it.
    let mut buf = Vec::new();
    assert_eq!(host.recv_into(&mut buf, soon(50)), Err(RecvError::Timeout));
    assert_eq!(buf.len(), 4096 - FRAME_HEADER);
    assert_eq!(buf[..], msg[..4096 - FRAME_HEADER]);
    assert_eq!(host.recv_into(&mut buf, soon(20)), Err(RecvError::Timeout));
    assert_eq!(
        buf.len(),
        4096 - FRAME_HEADER,
        "the partial message is kept"
    );
}

#[test]
fn closed_peer_is_peer_gone_after_its_messages() {
    let (mut host, mut worker) = pair(4096);
    worker.send(b"last words", None).unwrap();
    drop(worker);
    let mut buf = Vec::new();
    assert_eq!(host.recv_into(&mut buf, soon(1000)), Ok(10));
    assert_eq!(buf, b"last words");
    let start = Instant::now();
    assert_eq!(host.recv_into(&mut buf, None), Err(RecvError::PeerGone));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(host.send(b"x", None), Err(SendError::PeerGone));
}

#[test]
fn closing_wakes_a_sleeping_receiver() {
    let (mut host, worker) = pair(4096);
    host.set_spin(Duration::ZERO);
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(worker);
    });
    let start = Instant::now();
    let mut buf = Vec::new();
    assert_eq!(
        host.recv_into(&mut buf, soon(10_000)),
        Err(RecvError::PeerGone)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    closer.join().unwrap();
}

#[test]
fn killed_peer_is_peer_gone() {
    let (mut host, mut child) = spawn_child(4096, "echo");
    let mut buf = Vec::new();
    host.send(b"ping", soon(10_000)).unwrap();
    host.recv_into(&mut buf, soon(10_000)).unwrap();
    // Killed: no chance to set its closed flag. Only the watched pidfd can tell.
    child.kill().unwrap();
    let start = Instant::now();
    assert_eq!(
        host.recv_into(&mut buf, soon(10_000)),
        Err(RecvError::PeerGone)
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "death noticed after {took:?}"
    );
    assert!(host.peer_gone());
    child.wait().unwrap();
}

#[test]
fn out_of_range_write_position_is_corrupt_and_sticky() {
    let (mut host, worker) = pair(4096);
    // The hostile peer claims more bytes written than the ring holds.
    worker.ring_word(1, R_TAIL).store(4097, SeqCst);
    let mut buf = Vec::new();
    assert!(matches!(
        host.recv_into(&mut buf, soon(100)),
        Err(RecvError::Corrupt(_))
    ));
    // Repaired or not, the channel stays unusable.
    worker.ring_word(1, R_TAIL).store(0, SeqCst);
    assert!(matches!(
        host.recv_into(&mut buf, soon(100)),
        Err(RecvError::Corrupt(_))
    ));
    assert!(matches!(host.send(b"x", None), Err(SendError::Corrupt(_))));
}

#[test]
fn oversized_frame_length_is_corrupt() {
    let (mut host, worker) = pair(4096);
    // A frame header claiming 4 GiB - 16, published.
    // SAFETY: the ring-1 data area is at least 4 bytes of the live mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(0xFFFF_FFF0u32.to_le_bytes().as_ptr(), worker.data(1), 4)
    };
    worker.ring_word(1, R_TAIL).store(4, SeqCst);
    let mut buf = Vec::new();
    assert_eq!(
        host.recv_into(&mut buf, soon(100)),
        Err(RecvError::Corrupt("message length over the limit"))
    );
    assert!(buf.capacity() < 1 << 20, "nothing allocated for the claim");
}

#[test]
fn max_message_is_enforced_on_both_sides() {
    let (mut host, mut worker) = pair(4096);
    host.set_max_message(100);
    worker.set_max_message(100);
    assert_eq!(
        worker.send(&[0; 101], None),
        Err(SendError::TooLarge { len: 101, max: 100 })
    );
    worker.send(&[7; 100], None).unwrap();
    let mut buf = Vec::new();
    assert_eq!(host.recv_into(&mut buf, soon(100)), Ok(100));
    worker.set_max_message(1000);
    worker.send(&[7; 101], None).unwrap();
    assert!(matches!(
        host.recv_into(&mut buf, soon(100)),
        Err(RecvError::Corrupt(_))
    ));
}

#[test]
fn out_of_range_read_position_is_corrupt() {
    let (mut host, worker) = pair(4096);
    host.send(b"hello", None).unwrap();
    // The peer claims to have read past what was written.
    worker.ring_word(0, R_HEAD).store(100, SeqCst);
    assert!(matches!(
        host.send(b"again", soon(100)),
        Err(SendError::Corrupt(_))
    ));
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn garbage_in_the_shared_region_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut corrupt, mut ok, mut timeouts, mut gone) = (0, 0, 0, 0);
    for round in 0..300 {
        let (mut host, mut worker) = pair(4096);
        host.set_spin(Duration::ZERO);
        // Some traffic first, so positions are not all zero.
        for i in 0..(round % 7) {
            worker.send(&pattern(i, 100 * i), None).unwrap();
        }
        // Then the peer scribbles on control words (positions, sequences, flags) and data.
        let words: Vec<usize> = (0..2)
            .flat_map(|ring| {
                [
                    R_TAIL,
                    R_DATA_SEQ,
                    R_HEAD,
                    R_SPACE_SEQ,
                    R_DATA_WAITING,
                    R_SPACE_WAITING,
                ]
                .map(|f| RING_BASE + ring * RING_STRIDE + f)
            })
            .chain([OFF_CLOSED, OFF_CLOSED + 4])
            .collect();
        for _ in 0..1 + rng.next() % 4 {
            let off = words[(rng.next() % words.len() as u64) as usize];
            let value = match rng.next() % 4 {
                0 => rng.next() as u32,
                1 => (rng.next() % 8192) as u32,
                2 => u32::MAX - (rng.next() % 16) as u32,
                _ => 0,
            };
            worker.word(off).store(value, SeqCst);
        }
        for _ in 0..rng.next() % 64 {
            let at = (rng.next() % (2 * 4096)) as usize;
            // SAFETY: `at` is inside the two data areas of the live mapping.
            unsafe { *worker.data(0).add(at) = rng.next() as u8 };
        }
        let mut buf = Vec::new();
        for _ in 0..4 {
            match host.recv_into(&mut buf, soon(1)) {
                Ok(n) => {
                    assert_eq!(n, buf.len());
                    assert!(n <= DEFAULT_MAX_MESSAGE);
                    ok += 1;
                }
                Err(RecvError::Corrupt(_)) => corrupt += 1,
                Err(RecvError::Timeout) => timeouts += 1,
                Err(RecvError::PeerGone) => gone += 1,
            }
            match host.send(&pattern(round, 100), soon(1)) {
                Ok(()) | Err(SendError::Timeout | SendError::PeerGone) => {}
                Err(SendError::Corrupt(_)) => corrupt += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
    // The scribbles did hit every outcome, so the test exercised the checks.
    assert!(
        corrupt > 0 && ok > 0 && timeouts > 0 && gone > 0,
        "{corrupt} {ok} {timeouts} {gone}"
    );
}

#[test]
fn from_fd_rejects_bad_regions() {
    // Not sealed.
    // SAFETY: plain system calls; results checked.
    let fd = unsafe {
        let raw = libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC);
        assert!(raw >= 0);
        assert_eq!(libc::ftruncate(raw, (HEADER_BYTES + 2 * 4096) as i64), 0);
        OwnedFd::from_raw_fd(raw)
    };
    assert!(Channel::from_fd(fd).is_err());
    // A capacity that does not match the size.
    let (host, fd) = Channel::create(4096).unwrap();
    host.word(OFF_CAPACITY).store(8192, SeqCst);
    let err = Channel::from_fd(fd).unwrap_err();
    assert!(err.to_string().contains("capacity"), "{err}");
    // Bad magic.
    let (host, fd) = Channel::create(4096).unwrap();
    host.word(OFF_MAGIC).store(0, SeqCst);
    assert!(Channel::from_fd(fd).is_err());
    // Bad capacities are refused at creation.
    assert!(Channel::create(5000).is_err());
    assert!(Channel::create(2048).is_err());
}

#[test]
fn parts_split_receives_and_in_place_reads_carry_the_same_bytes() {
    // Sizes around the ring's end and a quarter of it, so that messages wrap, stream, and
    // sometimes lie in one piece; the parts split them at every kind of place.
    let (mut host, mut worker) = pair(4096);
    let sizes = [
        0, 1, 17, 18, 19, 1000, 1023, 1024, 1025, 3000, 4092, 4096, 9000, 20_000,
    ];
    let peer = std::thread::spawn(move || {
        let (mut buf, mut in_place) = (Vec::new(), 0);
        for (i, &len) in sizes.iter().enumerate() {
            let buf_at = buf.as_ptr() as usize;
            let got = worker
                .recv_in_place(&mut buf, soon(5000), |m| {
                    (m.to_vec(), m.as_ptr() as usize != buf_at)
                })
                .unwrap();
            assert_eq!(got.0, pattern(i, len), "message {i}");
            in_place += got.1 as usize;
            // Echo it back in three parts.
            let (a, rest) = got.0.split_at(len / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            worker.send_parts(&[a, b, &[], c], soon(5000)).unwrap();
        }
        in_place
    });
    let mut head = Vec::new();
    let mut tail = abi_stable::std_types::RVec::from(vec![9u8, 9]);
    for (i, &len) in sizes.iter().enumerate() {
        host.send(&pattern(i, len), soon(5000)).unwrap();
        let rest = host.recv_head(&mut head, 18, soon(5000)).unwrap();
        assert_eq!((head.len(), rest), (len.min(18), len.saturating_sub(18)));
        assert_eq!(&tail[..], &[9, 9], "nothing past the head before recv_rest");
        let n = host.recv_rest(&mut head, &mut tail, soon(5000)).unwrap();
        assert_eq!(n, len);
        let mut whole = head.clone();
        whole.extend_from_slice(&tail[2..]);
        assert_eq!(whole, pattern(i, len), "message {i}");
        assert_eq!(head.len(), len.min(18));
        tail.truncate(2);
    }
    let in_place = peer.join().unwrap();
    // Small messages that do not wrap are read in place; the ones larger than the ring cannot be.
    assert!(in_place >= 4, "{in_place} of {} read in place", sizes.len());
    assert!(in_place < sizes.len());
}

#[test]
fn a_message_in_parts_is_too_large_by_its_sum() {
    let (mut host, mut worker) = pair(4096);
    worker.set_max_message(100);
    host.set_max_message(100);
    let (a, b) = ([1u8; 60], [2u8; 41]);
    assert_eq!(
        host.send_parts(&[&a, &b], soon(100)),
        Err(SendError::TooLarge { len: 101, max: 100 })
    );
    // Nothing was sent: the channel is usable, and 100 bytes in parts go through.
    host.send_parts(&[&a, &b[..40]], soon(100)).unwrap();
    let mut buf = Vec::new();
    assert_eq!(worker.recv_into(&mut buf, soon(1000)), Ok(100));
    assert_eq!(&buf[..60], &a[..]);
}

#[test]
#[should_panic(expected = "only a worker reads")]
fn the_host_never_reads_a_message_in_place() {
    let (mut host, mut worker) = pair(4096);
    worker.send(b"untrusted", soon(100)).unwrap();
    let _ = host.recv_in_place(&mut Vec::new(), soon(100), |m| m.len());
}
