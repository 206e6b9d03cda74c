//! Helpers that keep each test a few lines: plugin directories, the CLI, JSON lookups and
//! provenance rewriting.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use host::{Host, HostIdentity};
use object::{Object, ObjectSection};
use serde_json::Value;
use tempfile::TempDir;

use crate::fixtures::fixtures;

/// A fresh plugin directory holding copies of the named fixture libraries.
pub fn plugin_dir(names: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        copy_into(&dir, name, &file_name(name));
    }
    dir
}

/// The file name a library of crate `name` has.
pub fn file_name(name: &str) -> String {
    fixtures()
        .lib(name)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Copies fixture `name` into `dir` as `file`; returns the new path.
pub fn copy_into(dir: &TempDir, name: &str, file: &str) -> PathBuf {
    let dest = dir.path().join(file);
    fs::copy(fixtures().lib(name), &dest).unwrap();
    dest
}

/// Runs `plugin-host` with `args`.
pub fn cli(args: &[&str]) -> Output {
    cli_with(args, &[], None)
}

/// Runs `plugin-host` with `args`, extra environment and optional stdin.
pub fn cli_with(args: &[&str], env: &[(&str, &Path)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugin-host"));
    cmd.args(args)
        .env("PLUGIN_HOST_LOG", "info")
        // The index cache of `run` and `transform`: the tests', not the user's.
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        // Sealed copies, as where no private runtime directory is (CI), unless a test
        // gives one: nothing of the tests' kept in the user's.
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run plugin-host");
    let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `plugin-host scan DIR --json EXTRA...`, parsed.
pub fn scan_json(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["scan", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = cli(&args);
    assert!(out.status.success(), "scan failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(&out)))
}

/// The `plugins[]` entry whose path ends in `file`.
pub fn entry<'a>(scan: &'a Value, file: &str) -> &'a Value {
    scan["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("no entry for {file} in {scan:#}"))
}

/// Asserts status, reason code, and that the message mentions each of `needles`.
pub fn assert_outcome(entry: &Value, status: &str, reason: &str, needles: &[&str]) {
    assert_eq!(entry["status"], status, "{entry:#}");
    assert_eq!(entry["reason"], reason, "{entry:#}");
    let message = entry["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            message.contains(needle),
            "message lacks {needle:?}: {message}"
        );
    }
}

/// The check named `check` in an entry.
pub fn check<'a>(entry: &'a Value, check: &str) -> &'a Value {
    entry["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} check in {entry:#}"))
}

/// The host's own provenance, as `host-info --json` prints it.
pub fn host_info() -> Value {
    let out = cli(&["host-info", "--json"]);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The settings of a host in this test process, with the same provenance as the
/// `plugin-host` binary.
pub fn builder() -> host::HostBuilder {
    Host::builder(HostIdentity::from_blob(plugin_api::provenance_blob!()).unwrap())
}

/// A host in this test process, with the same provenance as the `plugin-host` binary.
pub fn host() -> Host {
    builder().build()
}

/// File offset of the provenance note section.
fn note_offset(data: &[u8]) -> usize {
    let file = object::File::parse(data).unwrap();
    let section = file
        .section_by_name(plugin_api::frame::SECTION_ELF)
        .expect("provenance note section");
    section.file_range().unwrap().0 as usize
}

/// File offset and size of the framed provenance blob (the note's descriptor).
pub fn provenance_range(path: &Path) -> (usize, usize) {
    let data = fs::read(path).unwrap();
    let note = note_offset(&data);
    let size = u32::from_le_bytes(data[note + 4..note + 8].try_into().unwrap()) as usize;
    (note + plugin_api::frame::NOTE_PREFIX_LEN, size)
}

/// Rewrites the provenance JSON of the library at `path` in place (same section size: the
/// new JSON is padded with spaces, which JSON ignores).
pub fn rewrite_provenance(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut data = fs::read(path).unwrap();
    let (offset, size) = provenance_range(path);
    let blob = &data[offset..offset + size];
    let len = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let mut json: Value = serde_json::from_slice(&blob[16..16 + len]).unwrap();
    edit(&mut json);
    let mut payload = serde_json::to_vec(&json).unwrap();
    assert!(
        payload.len() <= len,
        "rewritten provenance is longer than the original"
    );
    payload.resize(len, b' ');
    data[offset + 16..offset + 16 + len].copy_from_slice(&payload);
    fs::write(path, data).unwrap();
}

/// Replaces, in `file`, every `"commit_hash":"…"` of the host's compiler with `fake` (same
/// length): the file's provenance now says another compiler built it. For a copy of the CLI
/// this changes both its worker note (what the host judges plugins against) and its own
/// identity (what it judges them against as a worker) — a stand-in for a worker built with
/// another toolchain, with no second toolchain needed.
pub fn claim_rustc_commit(file: &Path, fake: &str) {
    let real = host_info()["rustc"]["commit_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(real.len(), fake.len());
    let from = format!("\"commit_hash\":\"{real}\"").into_bytes();
    let to = format!("\"commit_hash\":\"{fake}\"").into_bytes();
    let mut data = fs::read(file).unwrap();
    let mut replaced = 0;
    let mut at = 0;
    while let Some(i) = data[at..].windows(from.len()).position(|w| w == from) {
        let i = at + i;
        data[i..i + to.len()].copy_from_slice(&to);
        replaced += 1;
        at = i + to.len();
    }
    assert!(replaced > 0, "no provenance in {}", file.display());
    fs::write(file, data).unwrap();
}

/// Overwrites raw bytes of the provenance section, starting `at` bytes into it.
pub fn patch_section(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    let (offset, _) = provenance_range(path);
    data[offset + at..offset + at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).unwrap();
}

/// Sets the size the provenance note claims for its descriptor.
pub fn set_note_size(path: &Path, size: u32) {
    let mut data = fs::read(path).unwrap();
    let note = note_offset(&data);
    data[note + 4..note + 8].copy_from_slice(&size.to_le_bytes());
    fs::write(path, data).unwrap();
}

/// Appends a provenance note carrying `blob` to the file and points the note segment (the
/// `PT_NOTE` program header that held the original note) at it. ELF64 little-endian only.
pub fn relocate_provenance(path: &Path, blob: &[u8]) {
    let mut data = fs::read(path).unwrap();
    let original = note_offset(&data) as u64;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes(data[0x36..0x38].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(data[0x38..0x3a].try_into().unwrap()) as usize;
    let header = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&h| {
            let field =
                |at: usize| u64::from_le_bytes(data[h + at..h + at + 8].try_into().unwrap());
            let p_type = u32::from_le_bytes(data[h..h + 4].try_into().unwrap());
            p_type == object::elf::PT_NOTE && (field(8)..field(8) + field(32)).contains(&original)
        })
        .expect("a PT_NOTE segment holds the provenance note");
    data.resize(data.len().next_multiple_of(16), 0);
    let offset = data.len() as u64;
    let note = plugin_api::frame::elf_note(blob, false);
    data.extend_from_slice(&note);
    data[header + 8..header + 16].copy_from_slice(&offset.to_le_bytes());
    data[header + 32..header + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
    fs::write(path, data).unwrap();
}

/// A provenance blob framed by hand (no size limit, unlike `frame::encode`).
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut blob = plugin_api::frame::MAGIC.to_vec();
    blob.extend_from_slice(&plugin_api::frame::FORMAT_VERSION.to_le_bytes());
    blob.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    blob.extend_from_slice(payload);
    blob
}

/// The provenance JSON of a fixture, as a `Value` to edit.
pub fn provenance_json(name: &str) -> Value {
    serde_json::to_value(host::read_provenance(&fixtures().lib(name)).unwrap()).unwrap()
}

/// Runs `plugin-host` with its private writable memory (heap, stacks' data, writable
/// mappings) capped at `limit` bytes through `RLIMIT_DATA`: an allocation past the ceiling
/// fails and the process aborts, so a successful run proves it stayed under it.
pub fn cli_under_memory_limit(args: &[&str], limit: u64) -> Output {
    cli_with_rlimit(args, libc::RLIMIT_DATA, limit)
}

/// Runs `plugin-host` (logging at `warn`) with resource limit `resource` set to `limit`.
pub fn cli_with_rlimit(args: &[&str], resource: libc::__rlimit_resource_t, limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugin-host"));
    cmd.args(args).env("PLUGIN_HOST_LOG", "warn");
    // SAFETY: the closure runs between fork and exec and only calls `setrlimit`, which is
    // async-signal-safe; it touches no locks or allocator state.
    unsafe {
        cmd.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(resource, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// The `path` of every plugin file entry of a scan, in order (the builtins, listed first,
/// left out).
pub fn paths(scan: &Value) -> Vec<&str> {
    scan["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] != "builtin")
        .map(|p| p["path"].as_str().unwrap())
        .collect()
}

/// Base64 (standard, padded): a credentials file, a minisign key or signature line.
pub fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
