//! Lazy start-up against plugins installed: `Host::index` of a directory of 1, 100 or 10 000
//! plugins with the index cache warm, then verify, load and register the one plugin whose
//! command is asked for, and call it. Run with `cargo bench --bench lazy`.
//!
//! A plain harness, like `loading` (libraries are never unloaded): fixed rounds, the three
//! sizes interleaved round by round, medians and spread. Only the plugin used must be a real
//! library; the others are only ever indexed, so they are the first 16 KiB of renamed copies
//! of `hello` (ELF header, program headers and provenance note: all that indexing reads) in
//! sparse files of the full size, hard linked into each round's directory — 10 000 full copies would take 6 GiB.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RSlice, RStr};
use plugin_api::CommandKind;

use support::{artifacts, builder, median, minor_faults, rename_plugin, scratch};

const SIZES: [usize; 3] = [1, 100, 10_000];
const ROUNDS: usize = 11;
/// What indexing reads of a file is within its first 4 KiB; the rest is never read.
const PREFIX: usize = 16 << 10;

fn min_max(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// `count` distinct plugin names' worth of index-only files in `pool`: `libxNNNN.so`, plugin
/// `xNNNN` declaring command `xNNNN`; the first [`PREFIX`] bytes of a renamed copy, the rest
/// a hole (a sparse file of the full size: the reader checks segments against the size).
fn index_only_pool(hello: &Path, pool: &Path, count: usize) -> Vec<PathBuf> {
    let template = pool.join("template.so");
    fs::copy(hello, &template).unwrap();
    rename_plugin(&template, "x0000");
    let full = fs::metadata(&template).unwrap().len();
    let mut prefix = fs::read(&template).unwrap();
    prefix.truncate(PREFIX);
    let at: Vec<usize> = (0..prefix.len() - 5)
        .filter(|&i| &prefix[i..i + 5] == b"x0000")
        .collect();
    assert!(!at.is_empty(), "the name is in the first {PREFIX} bytes");
    (0..count)
        .map(|i| {
            let name = format!("x{i:04}");
            for &i in &at {
                prefix[i..i + 5].copy_from_slice(name.as_bytes());
            }
            let path = pool.join(format!("lib{name}.so"));
            fs::write(&path, &prefix).unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(full)
                .unwrap();
            path
        })
        .collect()
}

/// For instruction counts (`valgrind --tool=callgrind`): `PLUGIN_HOST_BENCH_LAZY_LOOP=N:R`
/// makes one directory of `N` plugins installed, warms its index cache, then indexes it `R`
/// times (a fresh host each time) and, in the last, loads and calls the one real plugin.
/// The difference between two `N` at the same `R` is what the `N` files cost.
fn index_loop(hello: &Path, pool: &Path, spec: &str) {
    let (n, rounds) = spec.split_once(':').expect("N:R");
    let (n, rounds): (usize, usize) = (n.parse().unwrap(), rounds.parse().unwrap());
    let light = index_only_pool(hello, pool, n - 1);
    let dir = scratch("lazy-loop");
    for file in &light {
        fs::hard_link(file, dir.join(file.file_name().unwrap())).unwrap();
    }
    let wanted = "wloop";
    let path = dir.join(format!("lib{wanted}.so"));
    fs::copy(hello, &path).unwrap();
    rename_plugin(&path, wanted);
    let cache = scratch("lazy-loop-cache").join("index.bin");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..2 {
        let mut host = builder().index_cache(&cache).build();
        assert!(host.index(&[&dir]).unwrap().is_empty());
    }
    let mut faults = Vec::new();
    for round in 0..rounds {
        let before = minor_faults();
        looped_round(&dir, &cache, wanted, round + 1 == rounds);
        faults.push(minor_faults() - before);
    }
    println!("indexed {n} installed {rounds} times; minor page faults per round: {faults:?}");
}

/// What a page touched for the first time costs here: new anonymous memory, one byte
/// written per page (in a virtual machine the host may back the page only then).
fn first_touch_us() -> f64 {
    const PAGES: usize = 512;
    let page = 4096;
    let mut times = Vec::new();
    for _ in 0..15 {
        // SAFETY: a new private anonymous mapping, no address asked for; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGES * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let start = Instant::now();
        for i in 0..PAGES {
            // SAFETY: within the mapping made above, writable.
            unsafe { std::ptr::write_volatile(p.cast::<u8>().add(i * page), 1) };
        }
        times.push(start.elapsed().as_secs_f64() * 1e6 / PAGES as f64);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(p, PAGES * page) };
    }
    median(times)
}

/// One round of [`index_loop`] (for `--toggle-collect=lazy::looped_round`): a fresh host
/// indexes `dir`, and if `call`, loads and calls `wanted`.
#[inline(never)]
fn looped_round(dir: &Path, cache: &Path, wanted: &str, call: bool) {
    let mut host = builder()
        .plugin(wanted, host::PluginSettings::new().config(wanted))
        .index_cache(cache)
        .build();
    assert!(host.index(&[dir]).unwrap().is_empty());
    if call {
        let cmd = host.get_lazy::<CommandKind>(wanted).unwrap();
        let out = cmd.call(RSlice::from_slice(&[RStr::from("Ada")]));
        assert!(out.into_result().is_ok());
    }
}

fn main() {
    let Some(run) = support::sections() else {
        return;
    };
    if !run("lazy") {
        return;
    }
    let a = artifacts();
    let pool = scratch("lazy-pool");
    if let Ok(spec) = std::env::var("PLUGIN_HOST_BENCH_LAZY_LOOP") {
        return index_loop(&a.hello, &pool, &spec);
    }
    let start = Instant::now();
    let light = index_only_pool(&a.hello, &pool, SIZES[2] - 1);
    eprintln!(
        "pool of {} files made in {:.1?}",
        light.len(),
        start.elapsed()
    );

    // One directory and one cache per size and round; the plugin used is a fresh full copy
    // (a library is loaded once per process), named `wSRRR` (size index, round).
    let caches = scratch("lazy-caches");
    let mut setups = Vec::new();
    for round in 0..ROUNDS {
        for (s, &size) in SIZES.iter().enumerate() {
            let dir = scratch(&format!("lazy-{size}-{round}"));
            for file in &light[..size - 1] {
                fs::hard_link(file, dir.join(file.file_name().unwrap())).unwrap();
            }
            let wanted = format!("w{s}{round:03}");
            let path = dir.join(format!("lib{wanted}.so"));
            fs::copy(&a.hello, &path).unwrap();
            rename_plugin(&path, &wanted);
            let cache = caches.join(format!("{size}-{round}.bin"));
            setups.push((size, dir, cache, wanted));
        }
    }
    // Let the directories settle (the cache records a directory's identity only once its
    // last change is 100 ms old), then warm the caches: the first index reads every file and
    // records the directory, the next ones use the record.
    std::thread::sleep(Duration::from_millis(300));
    for (size, dir, cache, _) in &setups {
        for _ in 0..2 {
            let mut host = builder().index_cache(cache).build();
            let reports = host.index(&[dir]).unwrap();
            assert!(
                reports.is_empty(),
                "{} refused, the first: {:?}",
                reports.len(),
                reports[0].message
            );
            assert_eq!(host.indexed().len(), *size);
        }
    }

    let mut start_up: Vec<Vec<f64>> = vec![vec![]; SIZES.len()];
    let mut index_only: Vec<Vec<f64>> = vec![vec![]; SIZES.len()];
    // Minor page faults (pages touched for the first time) of each, per round.
    let mut faults: [Vec<Vec<f64>>; 2] = [vec![vec![]; SIZES.len()], vec![vec![]; SIZES.len()]];
    for round in 0..ROUNDS {
        for (s, &size) in SIZES.iter().enumerate() {
            let (_, dir, cache, wanted) = &setups[round * SIZES.len() + s];
            // Index alone (nothing loaded), then index + load one + call.
            let mut host = builder().index_cache(cache).build();
            let f = minor_faults();
            let t = Instant::now();
            host.index(&[dir]).unwrap();
            index_only[s].push(t.elapsed().as_secs_f64() * 1e3);
            faults[0][s].push((minor_faults() - f) as f64);
            assert_eq!(host.indexed().len(), size);

            let mut host = builder()
                .plugin(
                    wanted.clone(),
                    host::PluginSettings::new().config(wanted.clone()),
                )
                .index_cache(cache)
                .build();
            let f = minor_faults();
            let t = Instant::now();
            assert!(host.index(&[dir]).unwrap().is_empty());
            let cmd = host.get_lazy::<CommandKind>(wanted).unwrap();
            let out = cmd.call(RSlice::from_slice(&[RStr::from("Ada")]));
            start_up[s].push(t.elapsed().as_secs_f64() * 1e3);
            faults[1][s].push((minor_faults() - f) as f64);
            assert!(out.into_result().is_ok());
            assert_eq!(host.plugins().len(), 1, "one library loaded");
        }
    }
    println!(
        "lazy start-up, {ROUNDS} rounds interleaved, index cache warm; median [min, max] in ms"
    );
    let base = median(start_up[0].clone());
    for (s, &size) in SIZES.iter().enumerate() {
        let (lo, hi) = min_max(&start_up[s]);
        let m = median(start_up[s].clone());
        let (ilo, ihi) = min_max(&index_only[s]);
        let i = median(index_only[s].clone());
        let diffs: Vec<f64> = start_up[s]
            .iter()
            .zip(&start_up[0])
            .map(|(x, one)| x - one)
            .collect();
        let (dlo, dhi) = min_max(&diffs);
        println!(
            "lazy  {size:>6} installed: index + load one + call {m:8.3} [{lo:.3}, {hi:.3}]   \
             over 1 installed {:+.3} (per round {dlo:+.3} .. {dhi:+.3}, median {:+.3})   \
             index alone {i:8.3} [{ilo:.3}, {ihi:.3}]",
            m - base,
            median(diffs.clone()),
        );
    }
    println!(
        "lazy  a page touched for the first time on this machine (anonymous memory, 512 pages, \
         median of 15): {:.2} µs",
        first_touch_us()
    );
    for (s, &size) in SIZES.iter().enumerate() {
        println!(
            "lazy  {size:>6} installed: minor page faults, median: start-up {:.0}, index alone {:.0}",
            median(faults[1][s].clone()),
            median(faults[0][s].clone()),
        );
    }
}
