//! Hostile plugin directories: the loader never hangs, never crashes, never loads what it did
//! not verify, and stays within a fixed memory ceiling.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RSlice, RStr, RVec};
use host::{ScanMode, Status};
use plugin_api::{CallErrorKind, CommandKind, TransformKind};

use crate::fixtures::fixtures;
use crate::support::*;

/// The memory ceiling for scanning hostile directories: 64 MiB of private writable memory.
const MEMORY_CEILING: u64 = 64 << 20;

#[test]
fn a_file_swapped_after_verification_is_never_loaded() {
    let dir = plugin_dir(&["hello"]);
    let target = dir.path().join(file_name("hello"));
    // The impostor: a real, loadable plugin (with a load-time constructor) that is not
    // what was verified.
    let impostor = dir.path().join("impostor.bin");
    fs::copy(fixtures().lib("ctor-marker"), &impostor).unwrap();
    let swapped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = swapped.clone();
    let mut host = builder()
        .before_load(move |path| {
            fs::rename(&impostor, path).unwrap();
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert!(
        swapped.load(std::sync::atomic::Ordering::SeqCst),
        "the hook ran"
    );
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].status,
        Status::Loaded,
        "{:?}",
        reports[0].message
    );
    assert_eq!(reports[0].name.as_deref(), Some("hello"));
    // What got loaded is the verified `hello`, not the impostor now at that path.
    assert!(host.registry().get::<CommandKind>("hello").is_ok());
    assert!(
        host.registry().get::<CommandKind>("marker").is_err(),
        "the swapped-in library was loaded"
    );
    assert_eq!(
        host::read_provenance(&target).unwrap().name,
        "ctor-marker",
        "the swap really happened"
    );
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn special_files_never_block_or_abort_the_scan() {
    let dir = plugin_dir(&["hello"]);
    let p = dir.path();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        p.join(file_name("hello")),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let status = Command::new("mkfifo")
        .arg(p.join("fifo.so"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo");
    let _socket = std::os::unix::net::UnixListener::bind(p.join("socket.so")).unwrap();
    symlink("/dev/null", p.join("device.so")).unwrap();
    fs::create_dir(p.join("directory.so")).unwrap();
    symlink(p.join("loop-b.so"), p.join("loop-a.so")).unwrap();
    symlink(p.join("loop-a.so"), p.join("loop-b.so")).unwrap();
    symlink(p.join("nowhere"), p.join("dangling.so")).unwrap();
    fs::write(p.join("unreadable.so"), b"\x7fELF secret").unwrap();
    fs::set_permissions(p.join("unreadable.so"), fs::Permissions::from_mode(0o000)).unwrap();

    // Root reads a mode-000 file anyway: scan as `nobody` then, so it really is unreadable,
    // from a copy of the binary that `nobody` can reach wherever the checkout lives.
    let bin_dir = tempfile::tempdir().unwrap();
    let mut bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_plugin-host"));
    let root = running_as_root();
    if root {
        fs::set_permissions(bin_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let copy = bin_dir.path().join("plugin-host");
        fs::copy(&bin, &copy).unwrap();
        bin = copy;
    }
    let mut cmd = Command::new(&bin);
    cmd.args(["scan", p.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if root {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("scan of special files did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (file, detail) in [
        ("fifo.so", "a FIFO"),
        ("socket.so", "cannot read the file"),
        ("device.so", "a device"),
        ("directory.so", "a directory"),
        ("loop-a.so", "symbolic links"),
        ("loop-b.so", "symbolic links"),
        ("dangling.so", "No such file"),
        ("unreadable.so", "Permission denied"),
    ] {
        assert_outcome(entry(&scan, file), "rejected", "not-a-library", &[detail]);
    }
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
}

#[test]
fn huge_sparse_and_numerous_files_stay_under_the_memory_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let hello = fs::read(fixtures().lib("hello")).unwrap();

    // A 4 GiB sparse file behind a valid ELF header.
    let sparse = fs::File::create(p.join("sparse.so")).unwrap();
    use std::io::Write;
    (&sparse).write_all(&hello[..64]).unwrap();
    sparse.set_len(4 << 30).unwrap();
    // A 4 GiB sparse file whose one note segment spans all of it (millions of empty notes).
    let mut header = hello[..64].to_vec();
    header[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let mut phdr = [0u8; 56];
    phdr[0..4].copy_from_slice(&object::elf::PT_NOTE.to_le_bytes());
    phdr[8..16].copy_from_slice(&4096u64.to_le_bytes());
    phdr[32..40].copy_from_slice(&((4u64 << 30) - 8192).to_le_bytes());
    phdr[48..56].copy_from_slice(&4u64.to_le_bytes());
    header.extend_from_slice(&phdr);
    let notes = fs::File::create(p.join("sparse-notes.so")).unwrap();
    (&notes).write_all(&header).unwrap();
    notes.set_len(4 << 30).unwrap();
    // `PN_XNUM`: the real program header count (70 million) hides in section 0, and would
    // make the reader take 3.9 GiB if it trusted it.
    let mut xnum = hello[..64 * 1024].to_vec();
    xnum[0x28..0x30].copy_from_slice(&32768u64.to_le_bytes()); // e_shoff
    xnum[0x38..0x3a].copy_from_slice(&0xffffu16.to_le_bytes()); // e_phnum = PN_XNUM
    xnum[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes()); // e_shnum
    xnum[32768..32768 + 64].fill(0);
    xnum[32768 + 44..32768 + 48].copy_from_slice(&70_000_000u32.to_le_bytes()); // sh_info
    let xnum_file = fs::File::create(p.join("xnum.so")).unwrap();
    (&xnum_file).write_all(&xnum).unwrap();
    xnum_file.set_len(4 << 30).unwrap();
    // A provenance note claiming 4 GiB.
    let huge = copy_into(&dir, "hello", "huge-section.so");
    set_note_size(&huge, u32::MAX - 15);
    // A program header table that starts past the end of the file.
    let mut past = hello.clone();
    past[0x20..0x28].copy_from_slice(&(hello.len() as u64 + 4096).to_le_bytes());
    fs::write(p.join("past-end.so"), past).unwrap();
    // A section table that starts past the end of the file, in a library whose provenance
    // (if any) can only be found through it.
    let mut no_note = fs::read(fixtures().lib("not-a-plugin")).unwrap();
    let len = no_note.len() as u64;
    no_note[0x28..0x30].copy_from_slice(&(len + 4096).to_le_bytes());
    fs::write(p.join("sections-past-end.so"), no_note).unwrap();
    // A library cut short: its loadable segments reach past the end (dlopen would fault).
    fs::write(p.join("cut-short.so"), &hello[..64 * 1024]).unwrap();

    let started = Instant::now();
    let out = cli_under_memory_limit(&["scan", p.to_str().unwrap(), "--json"], MEMORY_CEILING);
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "over the memory ceiling? {}",
        stderr(&out)
    );
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_outcome(entry(&scan, "sparse.so"), "rejected", "no-provenance", &[]);
    assert_outcome(
        entry(&scan, "sparse-notes.so"),
        "rejected",
        "no-provenance",
        &[],
    );
    assert_outcome(
        entry(&scan, "huge-section.so"),
        "rejected",
        "malformed-provenance",
        &["claims 4294967280 bytes"],
    );
    assert_outcome(
        entry(&scan, "xnum.so"),
        "rejected",
        "not-a-library",
        &["program header table of 70000000 entries"],
    );
    assert_outcome(
        entry(&scan, "sections-past-end.so"),
        "rejected",
        "not-a-library",
        &["truncated or corrupt ELF"],
    );
    assert_outcome(
        entry(&scan, "cut-short.so"),
        "rejected",
        "not-a-library",
        &["past the end of the"],
    );
    assert_outcome(
        entry(&scan, "past-end.so"),
        "rejected",
        "not-a-library",
        &["truncated or corrupt ELF"],
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "reading a 4 GiB file took {elapsed:?}: it read more than headers"
    );

    // Ten thousand non-plugins in one directory.
    let many = tempfile::tempdir().unwrap();
    for i in 0..10_000 {
        fs::write(
            many.path().join(format!("junk-{i:05}.so")),
            format!("not a library {i}"),
        )
        .unwrap();
    }
    for i in 0..100 {
        fs::write(many.path().join(format!("notes-{i}.txt")), b"ignored").unwrap();
    }
    let out = cli_under_memory_limit(
        &["scan", "--no-load", many.path().to_str().unwrap(), "--json"],
        MEMORY_CEILING,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The CLI's builtin is listed first, then the files.
    let plugins = &scan["plugins"].as_array().unwrap()[1..];
    assert_eq!(plugins.len(), 10_000);
    assert!(plugins.iter().all(|e| e["reason"] == "not-a-library"));
}

#[test]
fn the_costliest_file_is_read_in_a_few_small_reads() {
    let dir = tempfile::tempdir().unwrap();
    let worst = dir.path().join("worst-case.so");
    crate::worst_case::write(&fs::read(fixtures().lib("hello")).unwrap(), &worst);
    assert_eq!(fs::metadata(&worst).unwrap().len(), crate::worst_case::LEN);
    let normal = copy_into(&dir, "hello", &file_name("hello"));

    let scan = scan_json(dir.path(), &["--no-load"]);
    assert_outcome(
        entry(&scan, "worst-case.so"),
        "rejected",
        "no-provenance",
        &[],
    );
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "verified");

    // What verification reads: a normal plugin, one or two reads of the first pages.
    let (result, normal_cost) = host::read_provenance_counted(&normal);
    assert!(result.is_ok(), "{result:?}");
    assert!(normal_cost.reads <= 2, "{normal_cost:?}");
    // The worst case: the first page, the program headers, 64 notes' headers (a small read
    // each, no descriptor), the dynamic flags, the section headers and names. Reading it
    // whole, as a window per note segment, took megabytes.
    let (result, cost) = host::read_provenance_counted(&worst);
    assert!(
        matches!(result, Err(host::ReadError::NoProvenance { .. })),
        "{result:?}"
    );
    assert!(
        cost.bytes <= 192 << 10 && cost.reads <= 72,
        "the worst case read {} bytes in {} reads",
        cost.bytes,
        cost.reads
    );
}

#[test]
fn executables_are_not_libraries_even_position_independent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // This package's CLI: Rust links executables position-independent (`ET_DYN`, with a
    // program interpreter) on Linux.
    let cli = p.join("cli.so");
    fs::copy(env!("CARGO_BIN_EXE_plugin-host"), &cli).unwrap();
    let mut data = fs::read(&cli).unwrap();
    assert_eq!(
        u16::from_le_bytes([data[16], data[17]]),
        object::elf::ET_DYN
    );
    // The same with its interpreter gone, as a static PIE has none: `DF_1_PIE` tells.
    let interp = program_header(&data, object::elf::PT_INTERP).expect("an interpreter");
    data[interp..interp + 4].copy_from_slice(&object::elf::PT_NULL.to_le_bytes());
    fs::write(p.join("static-pie.so"), &data).unwrap();
    // A plugin, provenance and all, that names a program interpreter: an executable too.
    let plugin = copy_into(&dir, "hello", "runnable-plugin.so");
    let mut data = fs::read(&plugin).unwrap();
    let stack = program_header(&data, object::elf::PT_GNU_STACK).expect("a stack segment");
    data[stack..stack + 4].copy_from_slice(&object::elf::PT_INTERP.to_le_bytes());
    fs::write(&plugin, data).unwrap();

    let scan = scan_json(p, &[]);
    for file in ["cli.so", "static-pie.so", "runnable-plugin.so"] {
        assert_outcome(
            entry(&scan, file),
            "rejected",
            "not-a-library",
            &["a position-independent executable, not a shared library"],
        );
    }
}

/// The file offset of the first program header of type `p_type` (64-bit little-endian ELF).
fn program_header(data: &[u8], p_type: u32) -> Option<usize> {
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([data[0x38], data[0x39]]) as usize;
    (0..phnum)
        .map(|i| phoff + i * 56)
        .find(|&h| u32::from_le_bytes(data[h..h + 4].try_into().unwrap()) == p_type)
}

#[test]
fn identities_beyond_ascii_are_shortened_for_messages_never_a_panic() {
    // A crate whose content differs from the host's copy is named with its identity cut
    // short: a digest or git commit beyond ASCII once panicked the host there (a cut inside
    // a character).
    let dir = tempfile::tempdir().unwrap();
    let mut json = provenance_json("hello");
    json["name"] = "hello-digest".into();
    json["digests"]["plugin-api 0.1.0"] = "sha256:01234567890\u{e9}\u{e9}\u{e9}".into();
    let path = copy_into(&dir, "hello", "non-ascii-digest.so");
    relocate_provenance(&path, &framed(&serde_json::to_vec(&json).unwrap()));
    let mut json = provenance_json("hello");
    json["name"] = "hello-commit".into();
    for d in json["dependencies"].as_array_mut().unwrap() {
        if let Some(spec) = d.as_str().filter(|d| d.starts_with("abi_stable ")) {
            *d = format!("{spec} (git+https://x.test/a#aaaaaaaa\u{20ac}b)").into();
        }
    }
    let path = copy_into(&dir, "hello", "non-ascii-commit.so");
    relocate_provenance(&path, &framed(&serde_json::to_vec(&json).unwrap()));
    let scan = scan_json(dir.path(), &["--no-load"]);
    for (file, crate_name) in [
        ("non-ascii-digest.so", "plugin-api"),
        ("non-ascii-commit.so", "abi_stable"),
    ] {
        let dependencies = check(entry(&scan, file), "dependencies");
        assert_eq!(dependencies["status"], "warn", "{file}: {dependencies}");
        let message = dependencies["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{crate_name} 0.11.3 (content differs"))
                || message.contains(&format!("{crate_name} 0.1.0 (content differs")),
            "{file}: {message}"
        );
    }
}

#[test]
fn malformed_provenance_is_reported_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated JSON: the frame declares fewer bytes than the record has.
    let truncated = copy_into(&dir, "hello", "truncated-json.so");
    let (_, size) = provenance_range(&truncated);
    patch_section(&truncated, 12, &((size - 16 - 10) as u32).to_le_bytes());
    // Non-UTF-8 inside the JSON.
    let binary = copy_into(&dir, "hello", "non-utf8.so");
    patch_section(&binary, 16 + 10, &[0xff, 0xfe]);
    // Valid JSON, wrong type.
    let typed = copy_into(&dir, "hello", "wrong-type.so");
    rewrite_provenance(&typed, |v| v["version"] = 12.into());
    // Absurd values: a 10 MB version string (over the size limit) and a 900 KB one (under it).
    for (file, len) in [
        ("ten-megabyte-version.so", 10_000_000),
        ("long-version.so", 900_000),
    ] {
        let mut json = provenance_json("hello");
        json["version"] = "9".repeat(len).into();
        let path = copy_into(&dir, "hello", file);
        relocate_provenance(&path, &framed(&serde_json::to_vec(&json).unwrap()));
    }
    let scan = scan_json(dir.path(), &[]);
    assert_outcome(
        entry(&scan, "truncated-json.so"),
        "rejected",
        "malformed-provenance",
        &["EOF while parsing"],
    );
    assert_outcome(
        entry(&scan, "non-utf8.so"),
        "rejected",
        "malformed-provenance",
        &["not UTF-8"],
    );
    assert_outcome(
        entry(&scan, "wrong-type.so"),
        "rejected",
        "malformed-provenance",
        &["invalid type"],
    );
    assert_outcome(
        entry(&scan, "ten-megabyte-version.so"),
        "rejected",
        "malformed-provenance",
        &["more than the"],
    );
    assert_outcome(
        entry(&scan, "long-version.so"),
        "rejected",
        "malformed-provenance",
        &["not a valid record"],
    );
}

/// A minimal header of each foreign kind.
fn elf32_x86() -> Vec<u8> {
    let mut h = vec![0u8; 256];
    h[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1]);
    h[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    h[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[40..42].copy_from_slice(&52u16.to_le_bytes());
    h
}

fn pe_dll() -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..2].copy_from_slice(b"MZ");
    h[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    h[0x40..0x44].copy_from_slice(b"PE\0\0");
    h[0x44..0x46].copy_from_slice(&0x8664u16.to_le_bytes()); // AMD64
    h[0x54..0x56].copy_from_slice(&240u16.to_le_bytes()); // SizeOfOptionalHeader
    h[0x56..0x58].copy_from_slice(&0x2022u16.to_le_bytes()); // DLL | EXECUTABLE | LARGE_ADDRESS_AWARE
    h[0x58..0x5a].copy_from_slice(&0x20bu16.to_le_bytes()); // PE32+
    h
}

fn macho_dylib() -> Vec<u8> {
    let mut h = vec![0u8; 256];
    h[..4].copy_from_slice(&0xfeed_facfu32.to_le_bytes());
    h[4..8].copy_from_slice(&0x0100_0007u32.to_le_bytes()); // x86_64
    h[12..16].copy_from_slice(&6u32.to_le_bytes()); // MH_DYLIB
    h
}

#[test]
fn other_architectures_and_formats_are_the_wrong_target() {
    let dir = tempfile::tempdir().unwrap();
    let arm = copy_into(&dir, "hello", "aarch64.so");
    let mut data = fs::read(&arm).unwrap();
    data[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64; provenance still says x86_64
    fs::write(&arm, data).unwrap();
    fs::write(dir.path().join("elf32.so"), elf32_x86()).unwrap();
    fs::write(dir.path().join("windows.so"), pe_dll()).unwrap();
    fs::write(dir.path().join("apple.so"), macho_dylib()).unwrap();

    let scan = scan_json(dir.path(), &[]);
    let host = "a 64-bit ELF file for x86_64";
    assert_outcome(
        entry(&scan, "aarch64.so"),
        "rejected",
        "target-mismatch",
        &["64-bit ELF file for aarch64", host],
    );
    assert_outcome(
        entry(&scan, "elf32.so"),
        "rejected",
        "target-mismatch",
        &["32-bit ELF file for x86", host],
    );
    assert_outcome(
        entry(&scan, "windows.so"),
        "rejected",
        "target-mismatch",
        &["PE (Windows)", host],
    );
    assert_outcome(
        entry(&scan, "apple.so"),
        "rejected",
        "target-mismatch",
        &["Mach-O (Apple)", host],
    );
}

#[test]
fn eight_threads_call_commands_and_transforms_concurrently() {
    let dir = plugin_dir(&["calls", "redact"]);
    let mut host = host();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert!(reports.iter().all(|r| r.status == Status::Loaded));
    let registry = host.registry();
    const CALLS: usize = 5_000;
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                let echo = registry.get::<CommandKind>("echo").unwrap();
                let boom = registry.get::<CommandKind>("boom").unwrap();
                let upper = registry.get::<TransformKind>("upper").unwrap();
                let redact = registry.get::<TransformKind>("redact").unwrap();
                let mut out = RVec::new();
                for i in 0..CALLS {
                    let (a, b) = (format!("t{t}"), format!("i{i}"));
                    let args = [RStr::from(a.as_str()), RStr::from(b.as_str())];
                    let said = echo.call(RSlice::from_slice(&args)).unwrap();
                    assert_eq!(said.as_str(), format!("t{t} i{i}"));
                    let line = format!("thread {t} call {i} from 10.0.{t}.{}\n", i % 250);
                    out.clear();
                    upper
                        .apply(RSlice::from_slice(line.as_bytes()), &mut out)
                        .unwrap();
                    assert_eq!(out.as_slice(), line.to_uppercase().as_bytes());
                    out.clear();
                    redact
                        .apply(RSlice::from_slice(line.as_bytes()), &mut out)
                        .unwrap();
                    assert_eq!(
                        out.as_slice(),
                        format!("thread {t} call {i} from [REDACTED:ipv4]\n").as_bytes()
                    );
                    if i % 1000 == 0 {
                        let err = boom.call(RSlice::from_slice(&[])).unwrap_err();
                        assert_eq!(err.kind, CallErrorKind::Panicked);
                    }
                }
            });
        }
    });
}
