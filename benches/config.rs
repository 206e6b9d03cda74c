//! Configuration parsing (criterion): `Config::load` of one file of 1 MiB — the most a
//! configuration file may hold (`host::config::MAX_CONFIG_LEN`) — full of keys, in one table and
//! on one line (an inline table). Target: ≤ 100 ms each; every command reads its configuration.
//! Run with `cargo bench --bench config`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use host::config::{Config, Locations, MAX_CONFIG_LEN};

/// `[plugins.big.config]` with one `keyN = N` line per key until 1 MiB, padded with a comment
/// to exactly 1 MiB.
fn one_table() -> String {
    let limit = MAX_CONFIG_LEN as usize;
    let mut text = String::from("[plugins.big.config]\n");
    let mut i = 0;
    loop {
        let line = format!("key{i} = {i}\n");
        if text.len() + line.len() + 1 > limit {
            break;
        }
        text.push_str(&line);
        i += 1;
    }
    text.push('#');
    text.push_str(&"x".repeat(limit - text.len()));
    text
}

/// The same keys on one line, as an inline table with multi-byte values (columns count
/// characters), padded to 1 MiB.
fn one_line() -> String {
    let limit = MAX_CONFIG_LEN as usize;
    let mut text = String::from("[plugins.big]\nconfig = { ");
    let mut i = 0;
    loop {
        let pair = format!("k{i} = \"\u{e9}\", ");
        if text.len() + pair.len() + "end = 1 }\n#".len() > limit {
            break;
        }
        text.push_str(&pair);
        i += 1;
    }
    text.push_str("end = 1 }\n#");
    text.push_str(&"x".repeat(limit - text.len()));
    text
}

fn load(dir: &Path) -> Config {
    let mut locations = Locations::project_only("plugin-host-bench", dir);
    locations.explicit = Some(dir.join("config.toml"));
    Config::load(&locations).expect("the benchmark's configuration loads")
}

fn config_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("config");
    g.throughput(Throughput::Bytes(MAX_CONFIG_LEN));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    for (name, text) in [
        ("1MiB-one-table", one_table()),
        ("1MiB-one-line", one_line()),
    ] {
        assert_eq!(text.len() as u64, MAX_CONFIG_LEN);
        std::fs::write(dir.path().join("config.toml"), &text).unwrap();
        assert!(load(dir.path()).plugin("big").is_some());
        g.bench_function(name, |b| b.iter(|| black_box(load(dir.path()))));
    }
    g.finish();
}

/// This process's CPU time (user + system), from `getrusage`.
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` fills the zeroed struct it is handed; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time per load, beside criterion's wall-clock time: on a shared machine the wall clock
/// also counts the time other processes had the core.
fn cpu_per_load() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("1MiB-one-table", one_table()),
        ("1MiB-one-line", one_line()),
    ] {
        std::fs::write(dir.path().join("config.toml"), &text).unwrap();
        let n = 20;
        let start = cpu_time();
        for _ in 0..n {
            black_box(load(dir.path()));
        }
        let per = (cpu_time() - start) / n;
        println!("config/{name}: CPU time per load (user + system, {n} loads): {per:.1?}");
    }
}

/// `criterion_group!` makes an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, config_load);
}

fn main() {
    cpu_per_load();
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
