//! Isolation transport benchmarks: the shared-memory channel (`plugin_isolate::shm`) against a
//! pipe + JSON baseline (the go-plugin / nushell style: serde_json encode, write, read, decode)
//! and against in-process calls, side by side in one run.
//!
//! The peer of every cross-process row is this benchmark binary re-run as a child (echo, the
//! `hello` greeting, `redact`, or the JSON/raw pipe echo), so both sides are the same optimised
//! code. Like `loading`, a plain harness: fixed blocks of each row, interleaved round by round
//! (so that a noisy neighbour on this shared machine hits every row alike), medians reported.
//! Run with `cargo bench --bench isolate` (`-- rtt`, `-- bulk` or `-- worker` for one section).
//!
//! The `worker` section goes through the real thing: release builds of `hello`, `redact` and
//! the `unruly` fixture loaded by a `Host`, isolated in `plugin-host __worker` processes
//! (protocol, supervision, shared-memory call channel) and in-process, called through
//! `registry().get::<CommandKind>` / `get::<TransformKind>` handles.

#[cfg(target_os = "linux")]
mod support;

#[cfg(target_os = "linux")]
#[allow(dead_code)] // the command object (`Greeter`) is not used here
#[path = "../plugins/hello/src/greet.rs"]
mod hello;
#[cfg(target_os = "linux")]
#[allow(dead_code)] // configuration parsing is not benchmarked
#[path = "../plugins/redact/src/redactor.rs"]
mod redact;

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::time::{Duration, Instant};

    use abi_stable::std_types::{RSlice, RStr};
    use host::{Host, ScanMode, Status};
    use plugin_api::{CommandKind, TransformKind};
    use plugin_isolate::shm::{self, pass_fd, Channel, RecvError};
    use plugin_isolate::{Isolation, Mode};
    use serde::{Deserialize, Serialize};

    use super::{hello, redact, support};

    #[global_allocator]
    static GLOBAL: support::Counting = support::Counting;

    /// Set in the environment of this binary re-run as a peer: `MODE` or `MODE,FD`.
    const CHILD_ENV: &str = "PLUGIN_HOST_BENCH_ISOLATE_CHILD";
    const HOST_LABEL: &str = "plugin-host 0.1.0";
    const SMALL: usize = 64;
    const BULK_BYTES: usize = 64 << 20;
    const CHUNK: usize = 256 * 1024;

    use super::support::{median, round_ratios};

    fn deadline() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(10))
    }

    #[derive(Serialize, Deserialize)]
    struct Request {
        id: u64,
        method: String,
        payload: String,
    }

    #[derive(Serialize, Deserialize)]
    struct Response {
        id: u64,
        payload: String,
    }

    /// The peer, when re-run as one.
    fn child(spec: &str) {
        let mut parts = spec.split(',');
        let mode = parts.next().unwrap();
        let fd = parts.next().unwrap_or("");
        let spin_us: u64 = parts.next().map_or(50, |s| s.parse().unwrap());
        match mode {
            "json" => return json_child(),
            "raw" => return raw_child(),
            _ => {}
        }
        // SAFETY: the parent passed this descriptor number for us to own (`pass_fd`); nothing
        // else in this freshly started process uses it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) };
        let mut ch = Channel::from_fd(fd).unwrap();
        ch.set_spin(Duration::from_micros(spin_us));
        // SAFETY: no preconditions.
        ch.watch_pid(unsafe { libc::getppid() } as u32).unwrap();
        let redactor = redact::Redactor::new(&[]);
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        loop {
            match ch.recv_into(&mut buf, None) {
                Ok(_) => {}
                Err(RecvError::PeerGone) => return,
                Err(e) => panic!("child: {e}"),
            }
            let reply: &[u8] = match mode {
                "echo" => &buf,
                "redact" => {
                    out.clear();
                    redactor.redact(&buf, |s| out.extend_from_slice(s));
                    &out
                }
                "hello" => {
                    // Arguments separated by NUL; the reply is a status byte and the text.
                    let text = std::str::from_utf8(&buf).unwrap();
                    let args: Vec<&str> = text.split('\0').collect();
                    out.clear();
                    match hello::greet(&args, HOST_LABEL) {
                        Ok(s) => {
                            out.push(0);
                            out.extend_from_slice(s.as_bytes());
                        }
                        Err(e) => {
                            out.push(1);
                            out.extend_from_slice(e.to_string().as_bytes());
                        }
                    }
                    &out
                }
                other => panic!("unknown mode {other}"),
            };
            ch.send(reply, None).unwrap();
        }
    }

    fn json_child() {
        let mut input = BufReader::new(std::io::stdin().lock());
        let mut output = std::io::stdout().lock();
        let (mut line, mut encoded) = (String::new(), Vec::new());
        loop {
            line.clear();
            if input.read_line(&mut line).unwrap() == 0 {
                return;
            }
            let req: Request = serde_json::from_str(&line).unwrap();
            assert_eq!(req.method, "echo");
            encoded.clear();
            serde_json::to_writer(
                &mut encoded,
                &Response {
                    id: req.id,
                    payload: req.payload,
                },
            )
            .unwrap();
            encoded.push(b'\n');
            output.write_all(&encoded).unwrap();
            output.flush().unwrap();
        }
    }

    fn raw_child() {
        let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
        let mut buf = [0u8; SMALL];
        while input.read_exact(&mut buf).is_ok() {
            output.write_all(&buf).unwrap();
            output.flush().unwrap();
        }
    }

    /// A child serving `mode` over a new channel; both ends spin `spin` before sleeping.
    fn spawn_shm(mode: &str, capacity: usize, spin: Duration) -> (Channel, Child) {
        let (mut ch, fd) = Channel::create(capacity).unwrap();
        ch.set_spin(spin);
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        let raw = pass_fd(&mut cmd, fd);
        cmd.env(CHILD_ENV, format!("{mode},{raw},{}", spin.as_micros()));
        let child = cmd.spawn().unwrap();
        drop(cmd);
        ch.watch_pid(child.id()).unwrap();
        (ch, child)
    }

    fn spawn_pipe(mode: &str) -> (Child, ChildStdin, BufReader<ChildStdout>) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        (child, stdin, stdout)
    }

    /// The pipe + JSON baseline's client (the go-plugin / nushell style): a request line out
    /// to [`json_child`], a response line back, buffers reused.
    struct JsonPipe<'a> {
        input: &'a mut ChildStdin,
        output: &'a mut BufReader<ChildStdout>,
        payload: String,
        encoded: Vec<u8>,
        line: String,
    }

    impl<'a> JsonPipe<'a> {
        fn new(
            input: &'a mut ChildStdin,
            output: &'a mut BufReader<ChildStdout>,
            payload: &[u8],
        ) -> Self {
            JsonPipe {
                input,
                output,
                payload: String::from_utf8(payload.to_vec()).unwrap(),
                encoded: Vec::new(),
                line: String::new(),
            }
        }

        /// One echo request and its response.
        fn round_trip(&mut self, id: u64) -> Response {
            self.encoded.clear();
            let request = Request {
                id,
                method: "echo".into(),
                payload: self.payload.clone(),
            };
            serde_json::to_writer(&mut self.encoded, &request).unwrap();
            self.encoded.push(b'\n');
            self.input.write_all(&self.encoded).unwrap();
            self.line.clear();
            self.output.read_line(&mut self.line).unwrap();
            serde_json::from_str(&self.line).unwrap()
        }
    }

    /// Per-operation time in ns of `n` calls of `f`.
    fn per_op(n: usize, mut f: impl FnMut(usize)) -> f64 {
        let start = Instant::now();
        for i in 0..n {
            f(i);
        }
        start.elapsed().as_secs_f64() * 1e9 / n as f64
    }

    fn round_trips() {
        let payload: Vec<u8> = (0..SMALL).map(|i| b'a' + (i % 26) as u8).collect();
        let (mut echo, echo_child) = spawn_shm("echo", 64 << 10, shm::DEFAULT_SPIN);
        // The same echo with shorter spins (0: straight to the futex).
        let mut spun: Vec<(Duration, Channel, Child)> = [0u64, 5, 15]
            .into_iter()
            .map(|us| {
                let spin = Duration::from_micros(us);
                let (ch, child) = spawn_shm("echo", 64 << 10, spin);
                (spin, ch, child)
            })
            .collect();
        let (mut greet, greet_child) = spawn_shm("hello", 64 << 10, shm::DEFAULT_SPIN);
        let (json_child, mut json_in, mut json_out) = spawn_pipe("json");
        let (raw_child, mut raw_in, mut raw_out) = spawn_pipe("raw");

        let mut buf = Vec::with_capacity(4096);
        let mut shm_echo = |_| {
            echo.send(black_box(&payload), deadline()).unwrap();
            echo.recv_into(&mut buf, deadline()).unwrap();
            assert_eq!(buf.len(), SMALL);
        };
        let mut nbuf = Vec::with_capacity(4096);
        let mut spun_echo = |ch: &mut Channel, n: usize| {
            per_op(n, |_| {
                ch.send(black_box(&payload), deadline()).unwrap();
                ch.recv_into(&mut nbuf, deadline()).unwrap();
                assert_eq!(nbuf.len(), SMALL);
            })
        };
        let mut gbuf = Vec::with_capacity(4096);
        let mut shm_hello = |_| {
            greet.send(black_box(b"Ada"), deadline()).unwrap();
            greet.recv_into(&mut gbuf, deadline()).unwrap();
            assert_eq!(gbuf[0], 0);
        };
        let mut json_pipe = JsonPipe::new(&mut json_in, &mut json_out, &payload);
        let mut json = |i: usize| {
            let resp = json_pipe.round_trip(i as u64);
            assert_eq!((resp.id, resp.payload.len()), (i as u64, SMALL));
        };
        let mut rbuf = [0u8; SMALL];
        let mut raw = |_| {
            raw_in.write_all(black_box(&payload)).unwrap();
            raw_out.read_exact(&mut rbuf).unwrap();
        };
        let object = CommandKind::object(|args: &[&str]| hello::greet(args, HOST_LABEL));
        let args = [RStr::from("Ada")];
        let mut in_process = |_| {
            black_box(object.call(black_box(RSlice::from_slice(&args))));
        };
        let greet_fn: fn(&[&str], &str) -> hello_result::R = black_box(hello::greet);
        let mut plain = |_| {
            black_box(greet_fn(black_box(&["Ada"]), HOST_LABEL)).ok();
        };

        // Warm up every path.
        per_op(2000, &mut shm_echo);
        per_op(2000, &mut shm_hello);
        for (_, ch, _) in &mut spun {
            spun_echo(ch, 500);
        }
        let mut spun_rows = vec![Vec::new(); spun.len()];
        per_op(500, &mut json);
        per_op(500, &mut raw);
        per_op(20_000, &mut in_process);

        let mut rows: [Vec<f64>; 6] = Default::default();
        for _ in 0..11 {
            rows[0].push(per_op(20_000, &mut shm_echo));
            rows[1].push(per_op(20_000, &mut shm_hello));
            rows[2].push(per_op(4_000, &mut raw));
            rows[3].push(per_op(4_000, &mut json));
            rows[4].push(per_op(200_000, &mut in_process));
            rows[5].push(per_op(200_000, &mut plain));
            for (k, (_, ch, _)) in spun.iter_mut().enumerate() {
                spun_rows[k].push(spun_echo(ch, 10_000));
            }
        }
        let [a, b, c, d, e, f] = rows.map(median);
        println!("round trip, 64-byte message echoed by a child process (medians of 11 interleaved rounds):");
        println!(
            "  shm channel, echo (default spin 50 µs):  {:8.2} µs",
            a / 1e3
        );
        for ((spin, _, _), row) in spun.iter().zip(spun_rows) {
            println!(
                "  shm channel, echo, spin {:2} µs:           {:8.2} µs",
                spin.as_micros(),
                median(row) / 1e3
            );
        }
        println!(
            "  shm channel, `hello` command in child:   {:8.2} µs",
            b / 1e3
        );
        println!(
            "  pipes, raw 64 bytes (no encoding):       {:8.2} µs",
            c / 1e3
        );
        println!(
            "  pipes + JSON (serde_json both ways):     {:8.2} µs   json/shm = {:.1}",
            d / 1e3,
            d / a
        );
        println!(
            "  in-process `hello` FFI command object:   {:8.3} µs   shm/in-process = {:.0}",
            e / 1e3,
            a / e
        );
        println!(
            "  in-process `hello::greet` fn pointer:    {:8.3} µs",
            f / 1e3
        );

        // The distribution of single shm round trips.
        let mut samples = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let start = Instant::now();
            shm_echo(0);
            samples.push(start.elapsed().as_nanos() as u64);
        }
        samples.sort_unstable();
        let pct = |p: f64| {
            samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1e3
        };
        println!(
            "  shm echo, 100 000 single round trips:    p50 {:.2} µs  p90 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs  max {:.0} µs",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(0.999),
            pct(1.0)
        );

        // Host-side allocations per round trip, buffers reused.
        let per_call = support::allocations_per_call(10_000, || shm_echo(0));
        println!("  host-side allocations per shm round trip: {per_call}");

        let spun_children: Vec<Child> = spun.into_iter().map(|(_, _, child)| child).collect();
        drop((echo, greet, json_in, raw_in, json_out, raw_out));
        for mut c in [echo_child, greet_child, json_child, raw_child]
            .into_iter()
            .chain(spun_children)
        {
            assert!(c.wait().unwrap().success());
        }
    }

    /// `hello::greet`'s result type.
    mod hello_result {
        pub type R = Result<String, Box<dyn std::error::Error + Send + Sync>>;
    }

    /// Chunks of at most `CHUNK` bytes cut after the last newline (the CLI's chunking).
    fn chunks(input: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < input.len() {
            let end = (start + CHUNK).min(input.len());
            let cut = match input[start..end].iter().rposition(|&b| b == b'\n') {
                Some(i) if end < input.len() => start + i + 1,
                _ => end,
            };
            out.push(&input[start..cut]);
            start = cut;
        }
        out
    }

    /// Nanoseconds the main thread of process `pid` (a worker's, which serves its calls)
    /// has spent on a CPU: the first field of `/proc/PID/schedstat`.
    fn on_cpu_ns(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
        stat.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("run time")
    }

    /// Minor page faults of process `pid` so far (pages it touched for the first time): the
    /// tenth field of `/proc/PID/stat`, counted after the command's closing parenthesis.
    fn minor_faults(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let (_, fields) = stat.rsplit_once(')').expect("stat fields");
        fields
            .split_whitespace()
            .nth(7)
            .and_then(|n| n.parse().ok())
            .expect("minflt")
    }

    /// Nanoseconds the calling thread has spent on a CPU.
    fn thread_cpu_ns() -> u64 {
        super::support::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    fn mib_per_s(bytes: usize, start: Instant) -> f64 {
        bytes as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
    }

    fn bulk() {
        let input = support::log_lines(BULK_BYTES);
        let pieces = chunks(&input);
        let (mut echo, echo_child) = spawn_shm("echo", 1 << 20, shm::DEFAULT_SPIN);
        let (mut red, red_child) = spawn_shm("redact", 1 << 20, shm::DEFAULT_SPIN);
        let redactor = redact::Redactor::new(&[]);
        // Same output both ways.
        red.send(pieces[3], deadline()).unwrap();
        let mut check = Vec::new();
        red.recv_into(&mut check, deadline()).unwrap();
        assert_eq!(check, redactor.redact_to_vec(pieces[3]));
        let mut out = Vec::with_capacity(2 * CHUNK);

        let mut shm_echo = || {
            let start = Instant::now();
            for p in &pieces {
                echo.send(p, deadline()).unwrap();
                echo.recv_into(&mut out, deadline()).unwrap();
                assert_eq!(out.len(), p.len());
            }
            mib_per_s(input.len(), start)
        };
        let mut out2 = Vec::with_capacity(2 * CHUNK);
        let mut memcpy = || {
            let start = Instant::now();
            for p in &pieces {
                out2.clear();
                out2.extend_from_slice(black_box(p));
                black_box(&out2);
            }
            mib_per_s(input.len(), start)
        };
        let mut out3 = Vec::with_capacity(2 * CHUNK);
        let mut shm_redact = || {
            let start = Instant::now();
            let mut total = 0;
            for p in &pieces {
                red.send(p, deadline()).unwrap();
                total += red.recv_into(&mut out3, deadline()).unwrap();
            }
            black_box(total);
            mib_per_s(input.len(), start)
        };
        // The same, two chunks in flight: the child redacts chunk n+1 while this side copies
        // out chunk n (a streaming transform can do this; a single call cannot).
        let mut out5 = Vec::with_capacity(2 * CHUNK);
        let (mut piped, piped_child) = spawn_shm("redact", 1 << 20, shm::DEFAULT_SPIN);
        let mut shm_pipelined = || {
            let start = Instant::now();
            let mut total = 0;
            piped.send(pieces[0], deadline()).unwrap();
            for p in &pieces[1..] {
                piped.send(p, deadline()).unwrap();
                total += piped.recv_into(&mut out5, deadline()).unwrap();
            }
            total += piped.recv_into(&mut out5, deadline()).unwrap();
            black_box(total);
            mib_per_s(input.len(), start)
        };
        let mut out4 = Vec::with_capacity(2 * CHUNK);
        let mut in_process = || {
            let start = Instant::now();
            let mut total = 0;
            for p in &pieces {
                out4.clear();
                redactor.redact(p, |s| out4.extend_from_slice(s));
                total += black_box(out4.len());
            }
            black_box(total);
            mib_per_s(input.len(), start)
        };

        shm_echo();
        shm_redact();
        shm_pipelined();
        let mut rows: [Vec<f64>; 5] = Default::default();
        for _ in 0..7 {
            rows[0].push(shm_echo());
            rows[1].push(memcpy());
            rows[2].push(shm_redact());
            rows[3].push(in_process());
            rows[4].push(shm_pipelined());
        }
        let [a, b, c, d, e] = rows.map(median);
        println!("bulk, 64 MiB of log lines in 256 KiB chunks (medians of 7 interleaved rounds):");
        println!("  shm, echoed by a child (4 copies/chunk): {a:8.0} MiB/s");
        println!(
            "  in-process memcpy (1 copy/chunk):        {b:8.0} MiB/s   shm/in-process = {:.2}",
            a / b
        );
        println!("  shm, `redact` in a child:                {c:8.0} MiB/s");
        println!("  in-process `redact`:                     {d:8.0} MiB/s   shm/in-process = {:.2}  (target >= 0.9)", c / d);

        println!(
            "  shm, `redact` in a child, 2 in flight:   {e:8.0} MiB/s   shm/in-process = {:.2}",
            e / d
        );
        drop((echo, red, piped));
        for mut c in [echo_child, red_child, piped_child] {
            assert!(c.wait().unwrap().success());
        }
    }

    /// Builds (once) the `unruly` fixture in release, as the plugins are.
    fn unruly() -> std::path::PathBuf {
        let target = support::root().join("target/bench-build/fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "unruly", "--manifest-path"])
            .arg(support::root().join("tests/fixtures/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the unruly fixture failed");
        target.join("release/libunruly.so")
    }

    /// A host holding `libs` (copied into a fresh directory), isolated or not.
    fn loaded(name: &str, libs: &[&std::path::Path], isolated: bool) -> Host {
        loaded_with(name, libs, isolated, 1)
    }

    /// The same, with `workers` worker slots per isolated plugin.
    fn loaded_with(name: &str, libs: &[&std::path::Path], isolated: bool, workers: usize) -> Host {
        let dir = support::scratch(name);
        for lib in libs {
            std::fs::copy(lib, dir.join(lib.file_name().unwrap())).unwrap();
        }
        let mut host = support::builder();
        if isolated {
            let isolation = Isolation::new()
                .worker_command(&support::artifacts().cli, ["__worker"])
                .default_mode(Mode::Process)
                .call_timeout(Duration::from_secs(10))
                .workers(workers);
            host = host.placement(isolation);
        }
        let mut host = host.build();
        let reports = host.scan(&[dir.as_path()], ScanMode::Load).unwrap();
        for r in &reports {
            assert_eq!(r.status, Status::Loaded, "{name}: {:?}", r.message);
            assert_eq!(r.isolated, isolated, "{name}");
        }
        host
    }

    /// Through the real worker: a `command` round trip, `redact` throughput, and the time
    /// from a crash to the next call served.
    fn worker() {
        let a = support::artifacts();
        let libs = [a.hello.as_path(), a.redact.as_path()];
        let isolated = loaded("isolate-worker-isolated", &libs, true);
        let in_process = loaded("isolate-worker-in-process", &libs, false);
        let iso_hello = isolated.registry().get::<CommandKind>("hello").unwrap();
        let inp_hello = in_process.registry().get::<CommandKind>("hello").unwrap();
        let args = [RStr::from("Ada")];
        let mut iso = |_| {
            let out = iso_hello.call(black_box(RSlice::from_slice(&args)));
            black_box(out.unwrap());
        };
        let mut inp = |_| {
            let out = inp_hello.call(black_box(RSlice::from_slice(&args)));
            black_box(out.unwrap());
        };
        let first = iso_hello.call(RSlice::from_slice(&args)).unwrap();
        assert_eq!(first, inp_hello.call(RSlice::from_slice(&args)).unwrap());
        // The pipe + JSON baseline (go-plugin / nushell style), as in `rtt`.
        let (json_child, mut json_in, mut json_out) = spawn_pipe("json");
        let text = "a".repeat(SMALL);
        let mut json_pipe = JsonPipe::new(&mut json_in, &mut json_out, text.as_bytes());
        let mut json = |i: usize| {
            let resp = json_pipe.round_trip(i as u64);
            assert_eq!(resp.id, i as u64);
        };
        per_op(5_000, &mut iso);
        per_op(500, &mut json);
        per_op(20_000, &mut inp);
        let mut rows: [Vec<f64>; 3] = Default::default();
        for _ in 0..11 {
            rows[0].push(per_op(20_000, &mut iso));
            rows[1].push(per_op(200_000, &mut inp));
            rows[2].push(per_op(4_000, &mut json));
        }
        let [i, p, j] = rows.map(median);
        println!("`hello` command through the registry handle, real worker (medians of 11 interleaved rounds):");
        println!(
            "  isolated (worker process, shm channel): {:8.2} µs   (target <= 5 µs)",
            i / 1e3
        );
        println!(
            "  in-process:                             {:8.3} µs   isolated/in-process = {:.0}",
            p / 1e3,
            i / p
        );
        println!(
            "  pipes + JSON baseline, 64-byte echo:    {:8.2} µs   json/isolated = {:.1}",
            j / 1e3,
            j / i
        );
        let mut samples = Vec::with_capacity(50_000);
        for _ in 0..50_000 {
            let start = Instant::now();
            iso(0);
            samples.push(start.elapsed().as_nanos() as u64);
        }
        samples.sort_unstable();
        let pct = |p: f64| {
            samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1e3
        };
        println!(
            "  isolated, 50 000 single calls:          p50 {:.2} µs  p90 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs",
            pct(0.5), pct(0.9), pct(0.99), pct(0.999)
        );
        // Host-side allocations per call: the returned `RString` is one, in-process too.
        for (label, f) in [
            ("isolated", &mut iso as &mut dyn FnMut(usize)),
            ("in-process", &mut inp),
        ] {
            let n = support::allocations_per_call(10_000, || f(0));
            println!("  host-side allocations per call, {label:10}: {n} (the greeting `RString` returned is one)");
        }
        drop((json_in, json_out));
        let mut json_child = json_child;
        assert!(json_child.wait().unwrap().success());

        // Bulk: 64 MiB in 256 KiB chunks through `redact`'s transform handle.
        let input = support::log_lines(BULK_BYTES);
        let pieces = chunks(&input);
        let iso_redact = isolated.registry().get::<TransformKind>("redact").unwrap();
        let inp_redact = in_process
            .registry()
            .get::<TransformKind>("redact")
            .unwrap();
        let (mut out_a, mut out_b) = (
            abi_stable::std_types::RVec::new(),
            abi_stable::std_types::RVec::new(),
        );
        iso_redact
            .apply(RSlice::from_slice(pieces[3]), &mut out_a)
            .unwrap();
        inp_redact
            .apply(RSlice::from_slice(pieces[3]), &mut out_b)
            .unwrap();
        assert_eq!(out_a, out_b, "same output both ways");
        type Out = abi_stable::std_types::RVec<u8>;
        let bulk = |apply: &dyn Fn(&[u8], &mut Out), out: &mut Out| {
            let start = Instant::now();
            for p in &pieces {
                out.clear();
                apply(p, out);
                black_box(out.len());
            }
            mib_per_s(input.len(), start)
        };
        let iso_apply = |p: &[u8], out: &mut Out| {
            iso_redact.apply(RSlice::from_slice(p), out).unwrap();
        };
        let inp_apply = |p: &[u8], out: &mut Out| {
            inp_redact.apply(RSlice::from_slice(p), out).unwrap();
        };
        // The same chunks through `transform_chunks`: pipelined (two in flight) when isolated,
        // the handle chunk by chunk in-process.
        let stream = |host: &Host| {
            let start = Instant::now();
            let mut bytes = 0;
            let done =
                plugin_isolate::transform_chunks(host, "redact", pieces.iter().copied(), |out| {
                    bytes += black_box(out.len());
                })
                .unwrap();
            assert_eq!(done, pieces.len());
            black_box(bytes);
            mib_per_s(input.len(), start)
        };
        let mut streamed = Vec::new();
        plugin_isolate::transform_chunks(&isolated, "redact", pieces[..8].iter().copied(), |out| {
            streamed.extend_from_slice(out)
        })
        .unwrap();
        let mut expected = Vec::new();
        for p in &pieces[..8] {
            out_b.clear();
            inp_apply(p, &mut out_b);
            expected.extend_from_slice(&out_b);
        }
        assert_eq!(streamed, expected, "the stream gives what the handle gives");
        bulk(&iso_apply, &mut out_a);
        bulk(&inp_apply, &mut out_b);
        stream(&isolated);
        stream(&in_process);
        // How much of a stream's wall time the worker's serving thread spent on a CPU, and
        // the calling thread in-process: a worker on a CPU as long as the stream lasts is
        // never left waiting for its next chunk.
        let worker = plugin_isolate::isolated(&isolated)
            .into_iter()
            .find_map(|p| (p.name == "redact").then_some(p.pid).flatten())
            .expect("redact's worker");
        let mut busy: [Vec<f64>; 2] = Default::default();
        let mut faults: [Vec<f64>; 3] = Default::default();
        let me = std::process::id();
        /// Rounds of the four bulk rows, interleaved.
        const ROUNDS: usize = 15;
        let mut rows: [Vec<f64>; 4] = Default::default();
        for _ in 0..ROUNDS {
            rows[0].push(bulk(&iso_apply, &mut out_a));
            rows[1].push(bulk(&inp_apply, &mut out_b));
            let (cpu, wall) = (on_cpu_ns(worker), Instant::now());
            let (wf, hf) = (minor_faults(worker), minor_faults(me));
            rows[2].push(stream(&isolated));
            busy[0].push((on_cpu_ns(worker) - cpu) as f64 / wall.elapsed().as_nanos() as f64);
            faults[0].push((minor_faults(worker) - wf) as f64);
            faults[1].push((minor_faults(me) - hf) as f64);
            let (cpu, wall) = (thread_cpu_ns(), Instant::now());
            let hf = minor_faults(me);
            rows[3].push(stream(&in_process));
            busy[1].push((thread_cpu_ns() - cpu) as f64 / wall.elapsed().as_nanos() as f64);
            faults[2].push((minor_faults(me) - hf) as f64);
        }
        // Each streamed round against the in-process handle measured beside it.
        let paired = |row: usize| median(round_ratios(&rows[row], &rows[1]));
        let (paired_si, paired_sp) = (paired(2), paired(3));
        let [bi, bp, si, sp] = rows.map(median);
        let [bw, bt] = busy.map(median);
        let [fw, fh, fp] = faults.map(median);
        println!("`redact` transform handle, 64 MiB in 256 KiB chunks (medians of {ROUNDS} interleaved rounds):");
        println!("  isolated:   {bi:8.0} MiB/s");
        println!(
            "  in-process: {bp:8.0} MiB/s   isolated/in-process = {:.2}  (one call per chunk)",
            bi / bp
        );
        println!("  `transform_chunks`, isolated (2 in flight): {si:8.0} MiB/s   streamed isolated/in-process handle = {:.2}  (target >= 0.95)", si / bp);
        println!("  `transform_chunks`, in-process:             {sp:8.0} MiB/s   streamed in-process/in-process handle = {:.2}", sp / bp);
        println!("  each round against the in-process handle beside it, median: streamed isolated {paired_si:.3}  (target >= 0.95); streamed in-process {paired_sp:.3} (the same work: the measurement's own spread)");
        println!("  on a CPU during a stream: the isolated worker {:.1} % of its wall time, the in-process caller {:.1} %", bw * 100.0, bt * 100.0);
        println!("  minor page faults during a stream: isolated — the worker {fw:.0}, the host {fh:.0}; in-process {fp:.0}");

        // A crash, then the next call: the worker is reaped, a new one started, and it serves.
        let unruly = loaded("isolate-worker-unruly", &[unruly().as_path()], true);
        let misbehave = unruly.registry().get::<CommandKind>("misbehave").unwrap();
        let abort = [RStr::from("abort")];
        let echo = [RStr::from("echo"), RStr::from("ok")];
        assert_eq!(
            misbehave.call(RSlice::from_slice(&echo)).unwrap().as_str(),
            "ok"
        );
        let (mut detect, mut recover, mut whole) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..15 {
            let start = Instant::now();
            let error = misbehave.call(RSlice::from_slice(&abort)).unwrap_err();
            assert_eq!(
                plugin_isolate::reason(&error),
                Some(host::ReasonCode::PluginCrashed)
            );
            let crashed = Instant::now();
            assert_eq!(
                misbehave.call(RSlice::from_slice(&echo)).unwrap().as_str(),
                "ok"
            );
            let served = Instant::now();
            detect.push((crashed - start).as_secs_f64() * 1e3);
            recover.push((served - crashed).as_secs_f64() * 1e3);
            whole.push((served - start).as_secs_f64() * 1e3);
        }
        let max = |v: &Vec<f64>| v.iter().cloned().fold(0.0, f64::max);
        println!("crash to next call served, `unruly`'s `misbehave abort` then `misbehave echo` (15 rounds):");
        println!(
            "  crashing call returns `plugin-crashed`:  median {:6.1} ms  max {:6.1} ms",
            median(detect.clone()),
            max(&detect)
        );
        println!(
            "  then the next call served (new worker):  median {:6.1} ms  max {:6.1} ms",
            median(recover.clone()),
            max(&recover)
        );
        println!("  crash to next call served, in all:       median {:6.1} ms  max {:6.1} ms   (target <= 100 ms)", median(whole.clone()), max(&whole));
    }

    /// More than one call in flight to one isolated plugin: a pool of two workers, called by
    /// one thread and by two, side by side (`redact` over 64 MiB in 256 KiB chunks, and the
    /// `hello` command), and in-process `redact` by one and two threads for scale.
    fn pool() {
        let a = support::artifacts();
        let libs = [a.hello.as_path(), a.redact.as_path()];
        let isolated = loaded_with("isolate-pool", &libs, true, 2);
        let in_process = loaded("isolate-pool-in-process", &libs, false);
        let input = support::log_lines(BULK_BYTES);
        let pieces = chunks(&input);
        type Out = abi_stable::std_types::RVec<u8>;
        // `threads` threads share the chunks (thread t takes every t-th): MiB/s in all.
        let bulk = |host: &Host, threads: usize| {
            let redact = host.registry().get::<TransformKind>("redact").unwrap();
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (redact, pieces) = (&redact, &pieces);
                    s.spawn(move || {
                        let mut out = Out::new();
                        for p in pieces.iter().skip(t).step_by(threads) {
                            out.clear();
                            redact.apply(RSlice::from_slice(p), &mut out).unwrap();
                            black_box(out.len());
                        }
                    });
                }
            });
            mib_per_s(input.len(), start)
        };
        const CALLS: usize = 100_000;
        // `threads` threads make CALLS `hello` calls in all: calls per µs.
        let calls = |host: &Host, threads: usize| {
            let hello = host.registry().get::<CommandKind>("hello").unwrap();
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    let hello = &hello;
                    s.spawn(move || {
                        let args = [RStr::from("Ada")];
                        for _ in 0..CALLS / threads {
                            black_box(hello.call(RSlice::from_slice(&args)).unwrap());
                        }
                    });
                }
            });
            CALLS as f64 / start.elapsed().as_secs_f64() / 1e6
        };
        // Warm both workers of the pool.
        bulk(&isolated, 2);
        calls(&isolated, 2);
        let mut rows: [Vec<f64>; 6] = Default::default();
        for _ in 0..7 {
            rows[0].push(bulk(&isolated, 1));
            rows[1].push(bulk(&isolated, 2));
            rows[2].push(bulk(&in_process, 1));
            rows[3].push(bulk(&in_process, 2));
            rows[4].push(calls(&isolated, 1));
            rows[5].push(calls(&isolated, 2));
        }
        let spread = |v: &Vec<f64>| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            format!("[{lo:.2}, {hi:.2}]")
        };
        let r_bulk = round_ratios(&rows[1], &rows[0]);
        let r_inp = round_ratios(&rows[3], &rows[2]);
        let r_calls = round_ratios(&rows[5], &rows[4]);
        let m: Vec<f64> = rows.iter().map(|r| median(r.clone())).collect();
        println!("one isolated plugin, a pool of 2 workers, 1 thread vs 2 threads (medians of 7 interleaved rounds):");
        println!(
            "  `redact` 64 MiB, isolated:   1 thread {:6.0} MiB/s   2 threads {:6.0} MiB/s   2/1 = {:.2} {} (target >= 1.7)",
            m[0], m[1], median(r_bulk.clone()), spread(&r_bulk)
        );
        println!(
            "  `redact` 64 MiB, in-process: 1 thread {:6.0} MiB/s   2 threads {:6.0} MiB/s   2/1 = {:.2} {}",
            m[2], m[3], median(r_inp.clone()), spread(&r_inp)
        );
        println!(
            "  `hello` calls, isolated:     1 thread {:6.3} /µs      2 threads {:6.3} /µs      2/1 = {:.2} {}",
            m[4], m[5], median(r_calls.clone()), spread(&r_calls)
        );
    }

    /// Pins the calling thread to `cpu` (false if it cannot be).
    fn pin(cpu: usize) -> bool {
        // SAFETY: `cpu_set_t` is a plain bit set: all zeroes (no CPU) is a valid value.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: `CPU_SET` writes one bit of the set we own; `cpu` is below `CPU_SETSIZE`
        // (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: pid 0 is the calling thread; the set lives across the call.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0 }
    }

    /// What the crosscore writer is sent: the chunk to fill the buffer with, whether with
    /// non-temporal stores, the buffer, and the reply to read from the ring first.
    type Fill = (usize, bool, Vec<u8>, Option<(usize, usize)>);

    /// A shared mapping of a memfd, as a worker's channel is: written by one thread, read by
    /// another after a channel message says where.
    struct SharedRing {
        base: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is plain memory; the bench orders each write before the reads of
    // that range through a channel message, and never reads a range while it is written.
    unsafe impl Sync for SharedRing {}

    impl SharedRing {
        fn new(len: usize) -> SharedRing {
            // SAFETY: a constant name; the descriptor is checked, owned by `fd` below.
            let fd = unsafe { libc::memfd_create(c"bench-ring".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0, "memfd_create");
            // SAFETY: just created, ours alone; closed when dropped (the mapping stays).
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a descriptor we own.
            assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }, 0);
            // SAFETY: a new shared mapping of `len` bytes of the memfd, checked below.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED, "mmap");
            SharedRing {
                base: base.cast(),
                len,
            }
        }

        fn put(&self, at: usize, bytes: &[u8]) {
            assert!(at + bytes.len() <= self.len);
            // SAFETY: inside the mapping (checked); no one reads this range meanwhile.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len())
            };
        }

        fn get(&self, at: usize, len: usize) -> &[u8] {
            assert!(at + len <= self.len);
            // SAFETY: inside the mapping (checked); written before the message that named it.
            unsafe { std::slice::from_raw_parts(self.base.add(at), len) }
        }
    }

    impl Drop for SharedRing {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, no longer borrowed.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }

    /// `src` appended to `dst` with non-temporal stores (past the cache, to memory) where
    /// aligned, then a store fence.
    #[cfg(target_arch = "x86_64")]
    fn extend_nt(dst: &mut Vec<u8>, src: &[u8]) {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        dst.reserve(src.len());
        let start = dst.len();
        let base = dst.as_mut_ptr().wrapping_add(start);
        let head = base.align_offset(16).min(src.len());
        let body = (src.len() - head) / 16 * 16;
        // SAFETY: `dst` has room for `src.len()` more bytes from `start` (reserved above);
        // `head` bytes are copied plainly, then `body` bytes 16 at a time to 16-byte aligned
        // addresses (`align_offset`), then the tail plainly; `src` and `dst` do not overlap
        // (a shared and a unique borrow). The fence orders the streaming stores before any
        // later store (what publishes the buffer). Then the bytes are initialised.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), base, head);
            let mut at = head;
            while at < head + body {
                let v = _mm_loadu_si128(src.as_ptr().add(at).cast::<__m128i>());
                _mm_stream_si128(base.add(at).cast::<__m128i>(), v);
                at += 16;
            }
            std::ptr::copy_nonoverlapping(src.as_ptr().add(at), base.add(at), src.len() - at);
            _mm_sfence();
            dst.set_len(start + src.len());
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn extend_nt(dst: &mut Vec<u8>, src: &[u8]) {
        // No streaming stores written for this architecture: row (e) is row (b) here.
        dst.extend_from_slice(src);
    }

    /// What isolated bulk work pays for its input coming from another CPU, without any
    /// worker, ring or plugin: `redact` (compiled in) over 64 MiB in 256 KiB chunks, read (a)
    /// where they are, as an in-process caller reads them; (b) from buffers another thread,
    /// pinned to the other CPU, has just written them into — the way the host writes a chunk
    /// into the ring for the worker, two chunks in flight; (c) from a buffer this thread copied
    /// them into itself first (the copy's cost alone, no other CPU); (d) as (c), the copy 2 KiB
    /// off the output's page offset (4K aliasing of loads and stores ruled in or out); (e) as
    /// (b), written with non-temporal stores (to memory, not into the writer's cache). This
    /// thread on CPU 0, the writer on CPU 1; the thread's own CPUs are given back after.
    fn crosscore() {
        use std::sync::mpsc;
        let input = support::log_lines(BULK_BYTES);
        let pieces = chunks(&input);
        let redactor = redact::Redactor::new(&[]);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: as in `pin`: a plain bit set, all zeroes valid.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; the set we own lives across the call.
        let saved = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of_val(&allowed), &mut allowed) == 0
        };
        if cpus < 2 || !saved || !pin(0) {
            println!("crosscore: needs two CPUs to pin to; skipped");
            return;
        }
        let mut out = Vec::with_capacity(2 * CHUNK);
        let redact_into = |chunk: &[u8], out: &mut Vec<u8>| {
            out.clear();
            redactor.redact(chunk, |s| out.extend_from_slice(s));
            black_box(out.len());
        };
        // A reply ring as the worker's: a shared mapping of a memfd, 1 MiB.
        let ring = SharedRing::new(1 << 20);
        // The writer: reads the reply it is told of (as the host takes a worker's reply out
        // of the ring), then fills each empty buffer it is sent with the next chunk, sends
        // it back.
        let (to_writer, writer_rx) = mpsc::sync_channel::<Fill>(2);
        let (writer_tx, from_writer) = mpsc::sync_channel::<Vec<u8>>(2);
        let shared: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = std::thread::scope(|scope| {
            let owned = &shared;
            let ring = &ring;
            scope.spawn(move || {
                assert!(pin(1), "pinned to CPU 1");
                let mut reply = Vec::with_capacity(2 * CHUNK);
                for (at, streaming, mut buffer, replied) in writer_rx {
                    if let Some((offset, len)) = replied {
                        reply.clear();
                        reply.extend_from_slice(ring.get(offset, len));
                        black_box(reply.len());
                    }
                    buffer.clear();
                    if streaming {
                        extend_nt(&mut buffer, &owned[at]);
                    } else {
                        buffer.extend_from_slice(&owned[at]);
                    }
                    if writer_tx.send(buffer).is_err() {
                        break;
                    }
                }
            });
            let mut rows: [Vec<f64>; 6] = Default::default();
            let mut copy = Vec::with_capacity(CHUNK);
            const SHIFT: usize = 2048;
            let mut shifted = Vec::with_capacity(CHUNK + SHIFT);
            for _ in 0..7 {
                // (a) where they are.
                let start = Instant::now();
                for p in &pieces {
                    redact_into(p, &mut out);
                }
                rows[0].push(mib_per_s(input.len(), start));
                // (b) written by the other CPU just before, two in flight; (e) the same
                // written with non-temporal stores.
                // (f) as (b), and each output copied into the reply ring, from which the
                // thread on CPU 1 reads it: the whole path of an isolated stream's bytes,
                // with no worker, protocol or plugin.
                for (row, streaming, reply) in
                    [(1, false, false), (4, true, false), (5, false, true)]
                {
                    let start = Instant::now();
                    to_writer
                        .send((0, streaming, Vec::with_capacity(CHUNK), None))
                        .unwrap();
                    to_writer
                        .send((1, streaming, Vec::with_capacity(CHUNK), None))
                        .unwrap();
                    let mut tail = 0;
                    for at in 0..pieces.len() {
                        let buffer = from_writer.recv().unwrap();
                        redact_into(&buffer, &mut out);
                        let replied = reply.then(|| {
                            if tail + out.len() > ring.len {
                                tail = 0;
                            }
                            ring.put(tail, &out);
                            tail += out.len();
                            (tail - out.len(), out.len())
                        });
                        if at + 2 < pieces.len() {
                            to_writer
                                .send((at + 2, streaming, buffer, replied))
                                .unwrap();
                        }
                    }
                    rows[row].push(mib_per_s(input.len(), start));
                }
                // (c) copied by this CPU first.
                let start = Instant::now();
                for p in &pieces {
                    copy.clear();
                    copy.extend_from_slice(p);
                    redact_into(&copy, &mut out);
                }
                rows[2].push(mib_per_s(input.len(), start));
                // (d) the same, the copy placed 2 KiB further on.
                let start = Instant::now();
                for p in &pieces {
                    shifted.clear();
                    shifted.resize(SHIFT, 0);
                    shifted.extend_from_slice(p);
                    redact_into(&shifted[SHIFT..], &mut out);
                }
                rows[3].push(mib_per_s(input.len(), start));
            }
            drop(to_writer);
            let offsets = (
                copy.as_ptr() as usize % 4096,
                (shifted.as_ptr() as usize + SHIFT) % 4096,
            );
            (rows, offsets)
        });
        // SAFETY: pid 0 is the calling thread; `allowed` is the set it had, read above.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&allowed), &allowed) };
        let (rows, (copy_at, shifted_at)) = writer;
        let [a, b, c, d, e, f] = rows.map(median);
        println!("`redact` compiled in, 64 MiB in 256 KiB chunks, this thread on CPU 0 (medians of 7 interleaved rounds):");
        println!("  (a) input read where it is:                       {a:8.0} MiB/s");
        println!(
            "  (b) input just written by a thread on CPU 1:      {b:8.0} MiB/s   b/a = {:.2}",
            b / a
        );
        println!(
            "  (c) input copied by this thread first:            {c:8.0} MiB/s   c/a = {:.2}",
            c / a
        );
        println!(
            "  (d) the same, the copy 2 KiB further on:          {d:8.0} MiB/s   d/a = {:.2}",
            d / a
        );
        println!(
            "  (e) as (b), written with non-temporal stores:     {e:8.0} MiB/s   e/a = {:.2}",
            e / a
        );
        println!(
            "  (f) as (b), the output copied to a reply ring:    {f:8.0} MiB/s   f/a = {:.2}  (an isolated stream's path)",
            f / a
        );
        println!(
            "  page offsets: output {:#05x}, copy {copy_at:#05x}, copy further on {shifted_at:#05x}",
            out.as_ptr() as usize % 4096,
        );
    }

    pub fn main() {
        if let Ok(spec) = std::env::var(CHILD_ENV) {
            return child(&spec);
        }
        let Some(run) = support::sections() else {
            return;
        };
        println!(
            "machine: {} cores; load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        if run("rtt") {
            round_trips();
        }
        if run("bulk") {
            bulk();
        }
        if run("worker") {
            worker();
        }
        if run("pool") {
            pool();
        }
        if run("crosscore") {
            crosscore();
        }
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
}
