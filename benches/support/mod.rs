//! Shared set-up for the benchmarks: release builds of the example plugins and the CLI, built
//! by the benchmark itself into `target/bench-build`, and plugin directories made from them.

#![allow(dead_code)] // each bench binary uses part of this module

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use host::{Host, HostIdentity};
use object::{Object, ObjectSection};

/// Release artifacts the benchmarks use.
pub struct Artifacts {
    /// The `hello` plugin (debug info stripped, as shipped).
    pub hello: PathBuf,
    /// The `redact` plugin.
    pub redact: PathBuf,
    /// The `plugin-host` CLI.
    pub cli: PathBuf,
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds (once) and returns the release artifacts.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let target = root().join("target/bench-build");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "hello",
                "-p",
                "redact",
                "-p",
                "plugin-host",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(root())
            // Shipped plugins carry no debug info; provenance does not record it.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the benchmark plugins failed");
        let release = target.join("release");
        Artifacts {
            hello: release.join("libhello.so"),
            redact: release.join("libredact.so"),
            cli: release.join("plugin-host"),
        }
    })
}

/// The settings of a host with this benchmark binary's own provenance (the `plugin-host`
/// package's).
pub fn builder() -> host::HostBuilder {
    Host::builder(HostIdentity::from_blob(plugin_api::provenance_blob!()).expect("own provenance"))
}

/// A host with this benchmark binary's own provenance.
#[allow(dead_code)]
pub fn host() -> Host {
    builder().build()
}

/// A scratch directory under `target/`, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/bench-scratch").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `count` hard links to `lib` in `dir` (verification does not care about inodes, and links
/// keep 10 000 "files" cheap).
pub fn linked_copies(lib: &Path, dir: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("lib{i:05}.so"));
            fs::hard_link(lib, &path).unwrap();
            path
        })
        .collect()
}

/// Rewrites the plugin name in a copy's provenance to `name` (same length as the original),
/// so that many copies of one plugin count as distinct plugins; a declared copy then declares
/// the command `name` instead (configure the copy with `name`: `hello` registers its command
/// under the name its configuration gives).
pub fn rename_plugin(path: &Path, name: &str) {
    let mut data = fs::read(path).unwrap();
    rename_plugin_bytes(&mut data, name);
    fs::write(path, data).unwrap();
}

/// [`rename_plugin`] on the bytes of a plugin file.
pub fn rename_plugin_bytes(data: &mut [u8], name: &str) {
    let (offset, size) = {
        let file = object::File::parse(&data[..]).unwrap();
        let section = file
            .section_by_name(plugin_api::frame::SECTION_ELF)
            .unwrap();
        let note = section.file_range().unwrap().0 as usize;
        let size = u32::from_le_bytes(data[note + 4..note + 8].try_into().unwrap()) as usize;
        (note + plugin_api::frame::NOTE_PREFIX_LEN, size)
    };
    let blob = &data[offset..offset + size];
    let len = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let payload = &mut data[offset + 16..offset + 16 + len];
    let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let old = json["name"].as_str().unwrap().to_owned();
    assert_eq!(old.len(), name.len(), "same-length names only");
    // Replaced in the text itself, so the record stays in the recorder's exact form (field
    // order, no whitespace) and is read as a real plugin's is: on the one-pass path, not
    // through serde_json.
    let mut replace = |from: String, to: String| {
        let at = payload
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .unwrap_or_else(|| panic!("{from} in the record"));
        payload[at..at + to.len()].copy_from_slice(to.as_bytes());
    };
    replace(
        format!("{{\"name\":\"{old}\""),
        format!("{{\"name\":\"{name}\""),
    );
    if json.get("capabilities").is_some() {
        replace(
            format!("\"capabilities\":{{\"command\":[\"{old}\"]}}"),
            format!("\"capabilities\":{{\"command\":[\"{name}\"]}}"),
        );
    }
    let renamed: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(renamed["name"], name);
}

/// This process's minor page faults so far (pages it touched for the first time).
pub fn minor_faults() -> i64 {
    // SAFETY: all-zero bytes are a valid `rusage`; `getrusage` fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `rusage` to fill.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// CPU time this thread has used (user and system), in microseconds.
pub fn thread_cpu_us() -> f64 {
    // SAFETY: all-zero bytes are a valid `rusage`; `getrusage` fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `rusage` to fill.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(done, 0);
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

/// Realistic log lines, about one in four carrying a secret, `size` bytes in all.
pub fn log_lines(size: usize) -> Vec<u8> {
    let templates = [
        "2026-11-21T10:00:{s:02}Z INFO  request id={i} method=GET path=/api/v1/items/{i} status=200 took={ms}ms\n",
        "2026-11-21T10:00:{s:02}Z INFO  login ok user=user{i}@example.com ip=10.{a}.{b}.{c}\n",
        "2026-11-21T10:00:{s:02}Z DEBUG cache miss key=item:{i} shard={a} backend=redis-{b}\n",
        "2026-11-21T10:00:{s:02}Z DEBUG upstream call Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.{i}.sig\n",
        "2026-11-21T10:00:{s:02}Z WARN  slow query table=orders rows={i} took={ms}ms\n",
        "2026-11-21T10:00:{s:02}Z INFO  job {i} finished in {ms}ms, {a} items processed, {b} skipped\n",
        "2026-11-21T10:00:{s:02}Z WARN  key AKIAIOSFODNN7EXAMPLE used from 192.168.{a}.{b}\n",
        "2026-11-21T10:00:{s:02}Z INFO  healthcheck ok version=1.2.{a} uptime={i}s\n",
    ];
    let mut out = Vec::with_capacity(size + 256);
    let mut i = 0usize;
    while out.len() < size {
        let line = templates[i % templates.len()]
            .replace("{s:02}", &format!("{:02}", i % 60))
            .replace("{i}", &i.to_string())
            .replace("{ms}", &(i % 997).to_string())
            .replace("{a}", &(i % 256).to_string())
            .replace("{b}", &((i / 7) % 256).to_string())
            .replace("{c}", &((i / 13) % 256).to_string());
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(size);
    out
}

/// The median of measurements (the upper one of an even count): benchmarks here take it over
/// rounds interleaved with the baseline's, so that a noisy moment hits both.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Each round's measurement over the baseline measured beside it in that round (the same
/// index). A machine that slows down for a while slows a whole round, so the median of these
/// ratios is not moved by it the way a ratio of two medians is.
pub fn round_ratios(row: &[f64], base: &[f64]) -> Vec<f64> {
    row.iter().zip(base).map(|(x, b)| x / b).collect()
}

/// The sections `cargo bench --bench NAME -- SECTION…` asks for (all when none is named), as
/// a test of a section's name; `None` when not run by `cargo bench` (`cargo test --benches`
/// passes no `--bench`): then nothing is run.
pub fn sections() -> Option<impl Fn(&str) -> bool> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    Some(move |name: &str| chosen.is_empty() || chosen.iter().any(|c| c == name))
}

/// A global allocator that counts this binary's allocations while [`allocations_per_call`]
/// runs (the plugins allocate through their own copy of the allocator, which it does not
/// see). A benchmark that measures allocations installs it:
/// `#[global_allocator] static GLOBAL: support::Counting = support::Counting;`.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// This binary's allocations per call of `f`, over `n` calls (counted by [`Counting`], which
/// must be the global allocator: a control allocation checks that the counter counts).
pub fn allocations_per_call(n: usize, mut f: impl FnMut()) -> f64 {
    COUNTING.store(true, Ordering::Relaxed);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        f();
    }
    let per_call = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    let control = ALLOCATIONS.load(Ordering::Relaxed);
    black_box(String::from("control"));
    let counted = ALLOCATIONS.load(Ordering::Relaxed) - control;
    COUNTING.store(false, Ordering::Relaxed);
    assert_eq!(
        counted, 1,
        "the counter counts (is `Counting` the global allocator?)"
    );
    per_call
}

/// Set to `CTL,ACK` (two FIFOs) to have `perf record --control=fifo:CTL,ACK -D -1` sample
/// only what a benchmark brackets with [`Profiled`] (each timed block), not the set-up.
pub const PERF_CTL_ENV: &str = "PLUGIN_HOST_BENCH_PERF_CTL";

/// When set, each [`Profiled`] stretch prints `perf-window: START END` to standard error: its
/// start and end on `CLOCK_MONOTONIC` in nanoseconds, the clock of `perf record -k
/// CLOCK_MONOTONIC`, so that samples can be kept to the timed stretches by their time
/// (`perf record --control` loses the symbols of user space on this machine).
pub const PERF_WINDOW_ENV: &str = "PLUGIN_HOST_BENCH_PERF_WINDOW";

/// Now on `CLOCK_MONOTONIC`, in nanoseconds.
fn monotonic_ns() -> u128 {
    u128::from(clock_ns(libc::CLOCK_MONOTONIC))
}

/// The clock `clock` (`CLOCK_MONOTONIC`, `CLOCK_THREAD_CPUTIME_ID`...), in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` we own.
    let read = unsafe { libc::clock_gettime(clock, &mut t) };
    assert_eq!(read, 0);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `perf` enabled from its creation until it is dropped, when [`PERF_CTL_ENV`] is set; the
/// stretch printed when [`PERF_WINDOW_ENV`] is.
pub struct Profiled(Option<(fs::File, fs::File)>, Option<u128>);

impl Profiled {
    pub fn start() -> Profiled {
        let window = std::env::var_os(PERF_WINDOW_ENV).map(|_| monotonic_ns());
        let Some(spec) = std::env::var_os(PERF_CTL_ENV) else {
            return Profiled(None, window);
        };
        let spec = spec.to_string_lossy().into_owned();
        let (ctl, ack) = spec.split_once(',').expect("CTL,ACK");
        let ctl = fs::OpenOptions::new().write(true).open(ctl).unwrap();
        let ack = fs::File::open(ack).unwrap();
        let mut profiled = Profiled(Some((ctl, ack)), window);
        profiled.say("enable");
        profiled
    }

    fn say(&mut self, what: &str) {
        use std::io::{Read, Write};
        if let Some((ctl, ack)) = &mut self.0 {
            writeln!(ctl, "{what}").unwrap();
            let mut reply = [0u8; 5];
            ack.read_exact(&mut reply).unwrap();
        }
    }
}

impl Drop for Profiled {
    fn drop(&mut self) {
        self.say("disable");
        if let Some(start) = self.1 {
            eprintln!("perf-window: {start} {}", monotonic_ns());
        }
    }
}
