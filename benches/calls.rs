//! Call benchmarks (criterion): a capability called through the registry against the same
//! function compiled into the benchmark and called through a non-inlined function pointer;
//! and `redact` throughput over 256 MiB of log lines, as a plugin through `plugin-host
//! transform` and compiled in. Run with `cargo bench --bench calls`;
//! `PLUGIN_HOST_BENCH_CALL_ROUNDS=40 cargo bench --bench calls` times the call paths side by
//! side in alternating rounds instead (see [`ROUNDS_ENV`]).

mod support;

// The plugins' own code, compiled into this benchmark (linking the plugin crates would also
// link their exported plugin symbols, twice).
#[path = "../plugins/hello/src/greet.rs"]
mod hello;
#[allow(dead_code)] // configuration parsing is not benchmarked
#[path = "../plugins/redact/src/redactor.rs"]
mod redact;

use std::hint::black_box;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use abi_stable::std_types::{RSlice, RStr, RString, RVec};
use criterion::{criterion_group, Criterion, Throughput};

use host::{ScanMode, Status};
use plugin_api::{CallResult, CommandKind, TransformKind};

use support::{artifacts, builder, log_lines, scratch};

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

/// A line with nothing to redact, where the transform's own work is small: what the call
/// costs shows against it.
const SHORT: &[u8] = b"ok\n";

const LINE: &[u8] =
    b"2026-11-21T10:00:01Z INFO  login ok user=ada@example.com ip=192.168.10.7 took=12ms\n";

fn loaded_host() -> host::Host {
    loaded_host_from(host::LoadFrom::default())
}

/// The host with `hello` and `redact` loaded; `LoadFrom::File` (loaded in place) lets a
/// profiler find the plugins' symbols, which it cannot in a sealed copy.
fn loaded_host_from(load_from: host::LoadFrom) -> host::Host {
    let a = artifacts();
    let dir = scratch("calls-plugins");
    std::fs::copy(&a.hello, dir.join("libhello.so")).unwrap();
    std::fs::copy(&a.redact, dir.join("libredact.so")).unwrap();
    let mut host = builder().load_from(load_from).build();
    let reports = host.scan(&[&dir], ScanMode::Load).unwrap();
    assert!(reports.iter().all(|r| r.status == Status::Loaded));
    host
}

fn call_overhead(c: &mut Criterion) {
    let host = loaded_host();
    let registry = host.registry();
    let host_label = format!("{} {}", host.identity().name, host.identity().version);

    let mut g = c.benchmark_group("command hello");
    let args = [RStr::from("Ada")];
    let command = registry.get::<CommandKind>("hello").unwrap();
    g.bench_function("plugin, held handle", |b| {
        b.iter(|| command.call(black_box(RSlice::from_slice(&args))))
    });
    g.bench_function("plugin, registry lookup + call", |b| {
        b.iter(|| {
            registry
                .get::<CommandKind>(black_box("hello"))
                .unwrap()
                .call(RSlice::from_slice(&args))
        })
    });
    let greet: fn(&[&str], &str) -> CallResult<String> = black_box(hello::greet);
    g.bench_function("compiled in, fn pointer", |b| {
        b.iter(|| greet(black_box(&["Ada"]), &host_label))
    });
    // The same FFI object the plugin makes (abi_stable dispatch, panic guard, RString), built
    // in this process: what the object costs, apart from crossing into another library.
    let label = host_label.clone();
    let local = CommandKind::object(move |args: &[&str]| hello::greet(args, &label));
    g.bench_function("compiled in, FFI object", |b| {
        b.iter(|| local.call(black_box(RSlice::from_slice(&args))))
    });
    g.finish();

    // The same command, its output written into the caller's reused buffer (`call_into`),
    // against the compiled-in writer behind a fn pointer into a reused `String`.
    let mut g = c.benchmark_group("command hello into a reused buffer");
    let mut out = RString::with_capacity(256);
    g.bench_function("plugin, held handle, call_into", |b| {
        b.iter(|| {
            out.clear();
            command
                .call_into(black_box(RSlice::from_slice(&args)), &mut out)
                .unwrap();
        })
    });
    let direct = command.direct();
    g.bench_function("plugin, direct call_into", |b| {
        b.iter(|| {
            out.clear();
            direct
                .call_into(black_box(RSlice::from_slice(&args)), &mut out)
                .unwrap();
        })
    });
    let greet_into: fn(&[&str], &str, &mut String) -> std::fmt::Result =
        black_box(hello::greet_into::<String>);
    let mut text = String::with_capacity(256);
    g.bench_function("compiled in, fn pointer", |b| {
        b.iter(|| {
            text.clear();
            greet_into(black_box(&["Ada"]), &host_label, &mut text).unwrap();
        })
    });
    // The same writer into the buffer type the plugin writes to (`RString`'s appends are
    // calls into abi_stable, `String`'s are inlined): the call's own cost is the difference
    // between the plugin and this row.
    let greet_into_r: fn(&[&str], &str, &mut RString) -> std::fmt::Result =
        black_box(hello::greet_into::<RString>);
    g.bench_function("compiled in, fn pointer, into an RString", |b| {
        b.iter(|| {
            out.clear();
            greet_into_r(black_box(&["Ada"]), &host_label, &mut out).unwrap();
        })
    });
    // The plugin's own `run_into`, compiled in: the plugin's code, without the call.
    let (greeter, run_into) = (hello::Greeter::new(host_label.clone()), run_into());
    g.bench_function("compiled in, fn pointer, the plugin's run_into", |b| {
        b.iter(|| {
            out.clear();
            run_into(&greeter, black_box(&["Ada"]), &mut out).unwrap();
        })
    });
    let local_writer = CommandKind::object(hello::Greeter::new(host_label.clone()));
    g.bench_function("compiled in, FFI object, call_into", |b| {
        b.iter(|| {
            out.clear();
            local_writer
                .call_into(black_box(RSlice::from_slice(&args)), &mut out)
                .unwrap();
        })
    });
    g.finish();
    out.clear();
    command
        .call_into(RSlice::from_slice(&args), &mut out)
        .unwrap();
    let per_call = support::allocations_per_call(10_000, || {
        out.clear();
        command
            .call_into(RSlice::from_slice(&args), &mut out)
            .unwrap();
    });
    println!("host-side allocations per command call_into (output buffer reused): {per_call}");

    let mut g = c.benchmark_group("transform redact (one 84-byte line)");
    let transform = registry.get::<TransformKind>("redact").unwrap();
    let mut out = RVec::with_capacity(256);
    g.bench_function("plugin, held handle", |b| {
        b.iter(|| {
            out.clear();
            transform
                .apply(black_box(RSlice::from_slice(LINE)), &mut out)
                .unwrap();
        })
    });
    let direct = transform.direct();
    g.bench_function("plugin, direct apply", |b| {
        b.iter(|| {
            out.clear();
            direct
                .apply(black_box(RSlice::from_slice(LINE)), &mut out)
                .unwrap();
        })
    });
    let redactor = redact::Redactor::new(&[]);
    let (apply, apply_r) = (redact_into_vec(), redact_into_rvec());
    let mut out = Vec::with_capacity(256);
    g.bench_function("compiled in, fn pointer", |b| {
        b.iter(|| {
            out.clear();
            apply(&redactor, black_box(LINE), &mut out);
        })
    });
    // The same into the buffer type the plugin appends to: the call's own cost is the
    // difference between the plugin and this row.
    let mut rout = RVec::with_capacity(256);
    g.bench_function("compiled in, fn pointer, into an RVec", |b| {
        b.iter(|| {
            rout.clear();
            apply_r(&redactor, black_box(LINE), &mut rout);
        })
    });
    g.finish();

    // Allocations on the host side of a transform call, with the output buffer reused.
    let mut out = RVec::with_capacity(256);
    transform.apply(RSlice::from_slice(LINE), &mut out).unwrap();
    let per_call = support::allocations_per_call(10_000, || {
        out.clear();
        transform.apply(RSlice::from_slice(LINE), &mut out).unwrap();
    });
    println!("host-side allocations per transform call (output buffer reused): {per_call}");
}

const THROUGHPUT_BYTES: usize = 256 << 20;
const BLOCK: usize = 256 * 1024;

/// The CLI's chunking: blocks cut at the last newline, the rest carried over.
fn chunked(input: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = 0;
    while start < input.len() {
        let end = (start + BLOCK).min(input.len());
        let cut = match input[start..end].iter().rposition(|&b| b == b'\n') {
            Some(i) if end < input.len() => start + i + 1,
            _ => end,
        };
        f(&input[start..cut]);
        start = cut;
    }
}

/// Runs `cmd` as a filter over `input`, draining its output; returns the bytes it wrote.
fn through_pipes(mut cmd: Command, input: &[u8]) -> usize {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let total = std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(input).unwrap());
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                break total;
            }
            total += n;
        }
    });
    assert!(child.wait().unwrap().success());
    assert!(total > input.len() / 2);
    total
}

fn throughput(c: &mut Criterion) {
    let a = artifacts();
    let input = log_lines(THROUGHPUT_BYTES);
    let dir = scratch("throughput-plugins");
    std::fs::copy(&a.redact, dir.join("libredact.so")).unwrap();

    let mut g = c.benchmark_group("redact 256 MiB");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_secs(3));

    g.bench_function("plugin-host transform (process, pipes)", |b| {
        b.iter(|| {
            let mut cmd = Command::new(&a.cli);
            cmd.args(["--log", "error", "transform", "--plugins"])
                .arg(&dir)
                .arg("redact");
            through_pipes(cmd, &input)
        })
    });
    g.bench_function("compiled-in filter (process, pipes)", |b| {
        b.iter(|| {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.env(FILTER_ENV, "1");
            through_pipes(cmd, &input)
        })
    });

    let host = loaded_host();
    let transform = host.registry().get::<TransformKind>("redact").unwrap();
    let mut out = RVec::with_capacity(2 * BLOCK);
    g.bench_function("plugin in-process (host library, no pipes)", |b| {
        b.iter(|| {
            let mut total = 0;
            chunked(&input, |chunk| {
                out.clear();
                transform
                    .apply(RSlice::from_slice(chunk), &mut out)
                    .unwrap();
                total += black_box(out.len());
            });
            total
        })
    });

    let redactor = redact::Redactor::new(&[]);
    let mut out = Vec::with_capacity(2 * BLOCK);
    g.bench_function("compiled in", |b| {
        b.iter(|| {
            let mut total = 0;
            chunked(&input, |chunk| {
                out.clear();
                redactor.redact(chunk, |s| out.extend_from_slice(s));
                total += black_box(out.len());
            });
            total
        })
    });
    g.finish();
}

/// `criterion_group!` makes an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, call_overhead, throughput);
}

/// Set in the environment of this benchmark re-run as a plain stdin → stdout filter: the
/// compiled-in counterpart of `plugin-host transform redact`, behind the same pipes.
const FILTER_ENV: &str = "PLUGIN_HOST_BENCH_REDACT_FILTER";

/// `plugin-host transform`'s streaming, with the redactor compiled in.
fn compiled_in_filter() {
    let redactor = redact::Redactor::new(&[]);
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut buf: Vec<u8> = Vec::with_capacity(2 * BLOCK);
    let mut out: Vec<u8> = Vec::with_capacity(2 * BLOCK);
    loop {
        let start = buf.len();
        buf.resize(start + BLOCK, 0);
        let n = stdin.read(&mut buf[start..]).unwrap();
        buf.truncate(start + n);
        let cut = if n == 0 {
            buf.len()
        } else {
            match buf[start..].iter().rposition(|&b| b == b'\n') {
                Some(i) => start + i + 1,
                None => continue,
            }
        };
        out.clear();
        redactor.redact(&buf[..cut], |s| out.extend_from_slice(s));
        stdout.write_all(&out).unwrap();
        buf.drain(..cut);
        if n == 0 {
            return;
        }
    }
}

/// Set (to `PATH:N`, `PATH` one of `plugin-command`, `compiled-command`,
/// `plugin-command-into`, `plugin-command-direct`, `compiled-command-into`,
/// `compiled-command-into-rstring`, `compiled-command-run-into`, `plugin-transform`,
/// `plugin-transform-direct`, `compiled-transform`, `compiled-transform-rvec`, and each
/// transform path on a short line with `transform-short` for `transform`, such as
/// `plugin-transform-short-direct` or `compiled-transform-short-rvec`) to make N calls down
/// one path and exit: run that under `valgrind --tool=callgrind` with N and with 0 to count
/// the instructions of one call.
const LOOP_ENV: &str = "PLUGIN_HOST_BENCH_CALL_LOOP";

fn call_loop(spec: &str) {
    let (path, n) = spec.split_once(':').expect("PATH:N");
    let n: usize = n.parse().expect("N");
    // A transform path with `-short` runs the same calls on the short line.
    let short = path.replacen("transform-short", "transform", 1);
    let (path, input) = if short != path {
        (short.as_str(), SHORT)
    } else {
        (path, LINE)
    };
    let host = loaded_host_from(host::LoadFrom::File);
    let registry = host.registry();
    let command = registry.get::<CommandKind>("hello").unwrap();
    let direct = command.direct();
    let transform = registry.get::<TransformKind>("redact").unwrap();
    let direct_transform = transform.direct();
    let redactor = redact::Redactor::new(&[]);
    // Behind non-inlined function pointers, as in the criterion rows.
    let greet: fn(&[&str], &str) -> CallResult<String> = black_box(hello::greet);
    let greet_into: fn(&[&str], &str, &mut String) -> std::fmt::Result =
        black_box(hello::greet_into::<String>);
    let greet_into_r: fn(&[&str], &str, &mut RString) -> std::fmt::Result =
        black_box(hello::greet_into::<RString>);
    let (greeter, run_into) = (
        hello::Greeter::new("plugin-host 0.1.0".to_owned()),
        run_into(),
    );
    let (apply, apply_r) = (redact_into_vec(), redact_into_rvec());
    let args = [RStr::from("Ada")];
    let (mut rout, mut vout) = (RVec::with_capacity(256), Vec::with_capacity(256));
    let (mut sout, mut tout) = (RString::with_capacity(256), String::with_capacity(256));
    for _ in 0..n {
        match path {
            "plugin-command" => drop(black_box(command.call(RSlice::from_slice(&args)))),
            "compiled-command" => drop(black_box(greet(&["Ada"], "plugin-host 0.1.0"))),
            "plugin-command-into" => {
                sout.clear();
                command
                    .call_into(RSlice::from_slice(black_box(&args)), &mut sout)
                    .unwrap();
            }
            "plugin-command-direct" => {
                sout.clear();
                direct
                    .call_into(RSlice::from_slice(black_box(&args)), &mut sout)
                    .unwrap();
            }
            "compiled-command-into" => {
                tout.clear();
                greet_into(black_box(&["Ada"]), "plugin-host 0.1.0", &mut tout).unwrap();
            }
            "compiled-command-run-into" => {
                sout.clear();
                run_into(&greeter, black_box(&["Ada"]), &mut sout).unwrap();
            }
            "compiled-command-into-rstring" => {
                sout.clear();
                greet_into_r(black_box(&["Ada"]), "plugin-host 0.1.0", &mut sout).unwrap();
            }
            "plugin-transform" => {
                rout.clear();
                transform
                    .apply(RSlice::from_slice(black_box(input)), &mut rout)
                    .unwrap();
            }
            "plugin-transform-direct" => {
                rout.clear();
                direct_transform
                    .apply(RSlice::from_slice(black_box(input)), &mut rout)
                    .unwrap();
            }
            "compiled-transform" => {
                vout.clear();
                apply(&redactor, black_box(input), &mut vout);
            }
            "compiled-transform-rvec" => {
                rout.clear();
                apply_r(&redactor, black_box(input), &mut rout);
            }
            other => panic!("unknown call path {other}"),
        }
    }
}

/// `hello`'s command compiled in: its `Command::run_into` (a debug log, then `greet_into`
/// through a `StringAppender` into the caller's `RString`) behind a function pointer.
type RunInto = fn(&hello::Greeter, &[&str], &mut RString) -> CallResult<()>;

fn run_into() -> RunInto {
    black_box(<hello::Greeter as plugin_api::Command>::run_into)
}

/// `redact` compiled in, behind a function pointer, appending to a `Vec`.
fn redact_into_vec() -> fn(&redact::Redactor, &[u8], &mut Vec<u8>) {
    black_box(|r, input, out| r.redact(input, |s| out.extend_from_slice(s)))
}

/// The same, appending to an `RVec` as the plugin does.
fn redact_into_rvec() -> fn(&redact::Redactor, &[u8], &mut RVec<u8>) {
    black_box(|r, input, out| r.redact(input, |s| out.extend_from_copy_slice(s)))
}

/// Set (to a number of rounds) to time each call path against its compiled-in baseline side
/// by side: every round times a batch of calls down each path, in an order rotated from round
/// to round, and the table gives each path's median and, per plugin path, the spread of its
/// difference from the baseline within a round.
const ROUNDS_ENV: &str = "PLUGIN_HOST_BENCH_CALL_ROUNDS";

/// Nanoseconds per call of `n` calls of `f`.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

/// The four ways of running `redact` that the rounds time, on any input.
struct TransformPaths<'a> {
    direct: plugin_api::kinds::DirectTransform<'a>,
    object: &'a plugin_api::kinds::FfiTransform_TO<'static, abi_stable::std_types::RBox<()>>,
    redactor: &'a redact::Redactor,
    apply: fn(&redact::Redactor, &[u8], &mut Vec<u8>),
    apply_r: fn(&redact::Redactor, &[u8], &mut RVec<u8>),
}

impl TransformPaths<'_> {
    /// Nanoseconds per call of `n` calls on `input` down path `which`: the plugin direct,
    /// through the object, compiled in into an `RVec`, compiled in into a `Vec`.
    fn time(
        &self,
        which: usize,
        input: &[u8],
        n: u32,
        rout: &mut RVec<u8>,
        vout: &mut Vec<u8>,
    ) -> f64 {
        match which {
            0 => per_call(n, || {
                rout.clear();
                self.direct
                    .apply(black_box(RSlice::from_slice(input)), rout)
                    .unwrap();
            }),
            1 => per_call(n, || {
                rout.clear();
                self.object
                    .apply(black_box(RSlice::from_slice(input)), rout)
                    .unwrap();
            }),
            2 => per_call(n, || {
                rout.clear();
                (self.apply_r)(self.redactor, black_box(input), rout);
            }),
            _ => per_call(n, || {
                vout.clear();
                (self.apply)(self.redactor, black_box(input), vout);
            }),
        }
    }
}

fn call_rounds(rounds: usize) {
    let host = loaded_host();
    let registry = host.registry();
    let command = registry.get::<CommandKind>("hello").unwrap();
    let direct = command.direct();
    let transform = registry.get::<TransformKind>("redact").unwrap();
    let direct_transform = transform.direct();
    let redactor = redact::Redactor::new(&[]);
    let greet_into: fn(&[&str], &str, &mut String) -> std::fmt::Result =
        black_box(hello::greet_into::<String>);
    let greet_into_r: fn(&[&str], &str, &mut RString) -> std::fmt::Result =
        black_box(hello::greet_into::<RString>);
    let (apply, apply_r) = (redact_into_vec(), redact_into_rvec());
    let label = format!("{} {}", host.identity().name, host.identity().version);
    let (greeter, run_into) = (hello::Greeter::new(label.clone()), run_into());
    let args = [RStr::from("Ada")];
    let (mut sout, mut tout) = (RString::with_capacity(256), String::with_capacity(256));
    let (mut rout, mut vout) = (RVec::with_capacity(256), Vec::with_capacity(256));
    let transforms_timed = TransformPaths {
        direct: direct_transform,
        object: transform,
        redactor: &redactor,
        apply,
        apply_r,
    };
    const PATHS: [&str; 12] = [
        "command: plugin, direct call_into",
        "command: plugin, call_into through the object",
        "command: compiled in, fn pointer, the plugin's run_into",
        "command: compiled in, fn pointer, into a String",
        "transform: plugin, direct apply",
        "transform: plugin, apply through the object",
        "transform: compiled in, fn pointer, into an RVec",
        "transform: compiled in, fn pointer, into a Vec",
        "command: compiled in, fn pointer, RString::push_str",
        "short transform: plugin, direct apply",
        "short transform: plugin, apply through the object",
        "short transform: compiled in, fn pointer, into an RVec",
    ];
    let (commands, transforms) = (200_000, 20_000);
    let mut times = vec![Vec::with_capacity(rounds); PATHS.len()];
    for round in 0..rounds {
        for k in 0..PATHS.len() {
            let path = (round + k) % PATHS.len();
            times[path].push(match path {
                0 => per_call(commands, || {
                    sout.clear();
                    direct
                        .call_into(black_box(RSlice::from_slice(&args)), &mut sout)
                        .unwrap();
                }),
                1 => per_call(commands, || {
                    sout.clear();
                    command
                        .call_into(black_box(RSlice::from_slice(&args)), &mut sout)
                        .unwrap();
                }),
                2 => per_call(commands, || {
                    sout.clear();
                    run_into(&greeter, black_box(&["Ada"]), &mut sout).unwrap();
                }),
                8 => per_call(commands, || {
                    sout.clear();
                    greet_into_r(black_box(&["Ada"]), &label, &mut sout).unwrap();
                }),
                3 => per_call(commands, || {
                    tout.clear();
                    greet_into(black_box(&["Ada"]), &label, &mut tout).unwrap();
                }),
                4..=7 => transforms_timed.time(path - 4, LINE, transforms, &mut rout, &mut vout),
                9..=11 => transforms_timed.time(path - 9, SHORT, commands, &mut rout, &mut vout),
                _ => unreachable!(),
            });
        }
    }
    println!("{rounds} rounds; per call, median [min, max] over rounds; the difference is taken within each round");
    for (path, name) in PATHS.iter().enumerate() {
        let mut t = times[path].clone();
        t.sort_by(f64::total_cmp);
        print!(
            "{name:<52} {:>8.2} ns [{:.2}, {:.2}]",
            support::median(t.clone()),
            t[0],
            t[t.len() - 1]
        );
        // Each plugin path against the same code compiled in, writing into the same buffer
        // the same way, and against a `String` or `Vec`.
        for baseline in match path {
            0 | 1 => &[2, 3][..],
            4 | 5 => &[6, 7],
            9 | 10 => &[11],
            _ => &[],
        } {
            let baseline = *baseline;
            let mut d: Vec<f64> = times[path]
                .iter()
                .zip(&times[baseline])
                .map(|(a, b)| a - b)
                .collect();
            d.sort_by(f64::total_cmp);
            print!(
                "\n{:>56}{:+.2} ns [{:+.2}, {:+.2}] over {}",
                "",
                support::median(d.clone()),
                d[0],
                d[d.len() - 1],
                PATHS[baseline].split(", ").last().unwrap()
            );
        }
        println!();
    }
}

fn main() {
    if std::env::var_os(FILTER_ENV).is_some() {
        return compiled_in_filter();
    }
    if let Ok(spec) = std::env::var(LOOP_ENV) {
        return call_loop(&spec);
    }
    if let Ok(rounds) = std::env::var(ROUNDS_ENV) {
        return call_rounds(rounds.parse().expect("a number of rounds"));
    }
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
