//! The trust step: the lock file (`plugin-host lock`, `checksum-mismatch`, `--locked`) and
//! minisign signatures, interop with the real minisign tool both ways.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use host::{LoadFrom, Lock, ScanMode, SignatureMode, Status, TrustedKey};
use object::{Object, ObjectSection};
use plugin_api::CommandKind;

use crate::support::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `plugin-host lock DIR --lock-file LOCK`.
fn lock(dir: &Path, lock: &Path) -> std::process::Output {
    cli(&["lock", s(dir), "--lock-file", s(lock)])
}

/// Flips one byte inside the `.comment` section (the toolchain's name: nothing reads it),
/// keeping the file's size.
fn flip_comment_byte(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let at = {
        let file = object::File::parse(&*data).unwrap();
        let section = file.section_by_name(".comment").expect(".comment section");
        let (offset, size) = section.file_range().unwrap();
        assert!(size > 4);
        offset as usize + 2
    };
    data[at] ^= 0x20;
    fs::write(path, data).unwrap();
}

/// The real minisign tool: the CI installs it (`.ci/run`).
fn minisign(args: &[&str]) -> std::process::Output {
    Command::new("minisign")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the minisign tool is needed (Debian package `minisign`; .ci/run installs it)")
}

/// A minisign key pair made by the tool (`-W`: no password): (public key line, .pub, .key).
pub(crate) fn minisign_keypair(dir: &Path, name: &str) -> (String, PathBuf, PathBuf) {
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let out = minisign(&["-G", "-W", "-p", s(&public), "-s", s(&secret)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    (line, public, secret)
}

pub(crate) fn minisign_sign(secret: &Path, file: &Path, legacy: bool) {
    let mut args = vec!["-S", "-s", s(secret), "-m", s(file)];
    if legacy {
        args.push("-l");
    }
    let out = minisign(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn lock_writes_sorted_relative_entries_and_locked_scans_load() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    for name in ["wc", "hello"] {
        fs::copy(
            crate::fixtures::fixtures().lib(name),
            plugins.join(file_name(name)),
        )
        .unwrap();
    }
    let lock_path = root.path().join("plugin-host.lock");
    let out = lock(&plugins, &lock_path);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("2 plugins locked"),
        "{}",
        stdout(&out)
    );
    let text = fs::read_to_string(&lock_path).unwrap();
    assert!(text.starts_with("# plugin-host.lock: generated"), "{text}");
    let names: Vec<_> = text.lines().filter(|l| l.starts_with("name = ")).collect();
    assert_eq!(names, ["name = \"hello\"", "name = \"wc\""]);
    assert!(text.contains("path = \"plugins/libhello.so\""), "{text}");
    let parsed = Lock::read(&lock_path).unwrap();
    let hello = parsed.get("hello").unwrap();
    let bytes = fs::read(plugins.join("libhello.so")).unwrap();
    assert_eq!(hello.size, bytes.len() as u64);
    assert!(hello.provenance.starts_with("sha256:"));
    // The lock's sha256 is the file's (checked against the coreutils tool).
    let sum = Command::new("sha256sum")
        .arg(plugins.join("libhello.so"))
        .output()
        .unwrap();
    assert!(stdout(&sum).starts_with(&hello.sha256), "{}", stdout(&sum));

    let scan = scan_json(&plugins, &["--locked", "--lock-file", s(&lock_path)]);
    assert_eq!(entry(&scan, "libhello.so")["status"], "loaded", "{scan:#}");
    assert_eq!(entry(&scan, "libwc.so")["status"], "loaded");
    // Signatures ignored (no key): not looked at.
    assert_eq!(
        entry(&scan, "libwc.so")["signature"],
        serde_json::Value::Null
    );
}

#[test]
fn a_one_byte_change_is_refused_checksum_mismatch_before_any_code_runs() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("loaded");
    let dir = plugin_dir(&["ctor-marker"]);
    let lock_path = marker_dir.path().join("plugin-host.lock");
    assert!(lock(dir.path(), &lock_path).status.success());
    let path = dir.path().join(file_name("ctor-marker"));
    let scan_with_marker = || {
        let out = cli_with(
            &[
                "scan",
                s(dir.path()),
                "--json",
                "--lock-file",
                s(&lock_path),
            ],
            &[("PLUGIN_HOST_TEST_MARKER", &marker)],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };

    // Same size, one byte different.
    flip_comment_byte(&path);
    let scan = scan_with_marker();
    assert_outcome(
        entry(&scan, "libctor_marker.so"),
        "rejected",
        "checksum-mismatch",
        &[
            "changed since it was locked",
            "its sha256 is",
            "run `plugin-host lock` again",
        ],
    );
    assert!(!marker.exists(), "a plugin refused by the lock ran code");
    // One byte appended (size differs); the byte flipped back.
    flip_comment_byte(&path);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all_at_end(b"\0");
    let scan = scan_with_marker();
    assert_outcome(
        entry(&scan, "libctor_marker.so"),
        "rejected",
        "checksum-mismatch",
        &[
            "bytes, but the lock file",
            "expects",
            "run `plugin-host lock` again",
        ],
    );
    assert!(!marker.exists(), "a plugin refused by the lock ran code");

    // Control: locked again, the same file loads (and its constructor runs).
    assert!(lock(dir.path(), &lock_path).status.success());
    let scan = scan_with_marker();
    assert_eq!(
        entry(&scan, "libctor_marker.so")["status"],
        "loaded",
        "{scan:#}"
    );
    assert!(marker.exists());
}

trait AppendByte {
    fn write_all_at_end(self, bytes: &[u8]);
}

impl AppendByte for fs::File {
    fn write_all_at_end(mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self, bytes).unwrap();
    }
}

#[test]
fn locked_refuses_unlisted_plugins_not_locked() {
    let dir = plugin_dir(&["hello"]);
    let lock_dir = tempfile::tempdir().unwrap();
    let lock_path = lock_dir.path().join("plugin-host.lock");
    assert!(lock(dir.path(), &lock_path).status.success());
    copy_into(&dir, "wc", &file_name("wc"));
    let scan = scan_json(dir.path(), &["--locked", "--lock-file", s(&lock_path)]);
    assert_eq!(entry(&scan, "libhello.so")["status"], "loaded");
    assert_outcome(
        entry(&scan, "libwc.so"),
        "rejected",
        "not-locked",
        &["`wc` is not in the lock file", "plugin-host lock"],
    );
    // Without --locked, the lock still pins what it lists, and the others load.
    let scan = scan_json(dir.path(), &["--lock-file", s(&lock_path)]);
    assert_eq!(entry(&scan, "libwc.so")["status"], "loaded");
    // --locked without a lock file is an error, not "everything refused".
    let missing = lock_dir.path().join("none.lock");
    let out = cli(&[
        "scan",
        s(dir.path()),
        "--locked",
        "--lock-file",
        s(&missing),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no lock file"), "{}", stderr(&out));
    // A malformed lock file is an error naming the file and line.
    fs::write(&missing, "version = 1\n[[plugin]\n").unwrap();
    let out = cli(&["scan", s(dir.path()), "--lock-file", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("none.lock:2: not valid TOML"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn lock_does_not_lock_rejected_files_and_says_so() {
    let dir = plugin_dir(&["hello"]);
    let bad = copy_into(&dir, "wc", "libskewed.so");
    rewrite_provenance(&bad, |p| p["target"] = "i686-unknown-linux-gnu".into());
    let lock_path = dir.path().join("plugin-host.lock");
    let out = lock(dir.path(), &lock_path);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("libskewed.so: not locked [target-mismatch]"),
        "{text}"
    );
    assert!(
        text.contains("1 plugin locked, 1 rejected file not locked"),
        "{text}"
    );
    let lock = Lock::read(&lock_path).unwrap();
    assert_eq!(
        lock.entries().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["hello"]
    );
    // Under the lock dir: the path is relative.
    assert_eq!(lock.get("hello").unwrap().path, "libhello.so");
}

/// The host hashes the sealed copy the loader then maps: a write to the plugin file after
/// verification changes neither what was hashed nor what runs.
#[test]
fn a_write_after_hashing_cannot_change_what_is_loaded() {
    let dir = plugin_dir(&["hello"]);
    let path = dir.path().join(file_name("hello"));
    let lock_path = dir.path().join("plugin-host.lock");
    let mut lock = Lock::new(&lock_path);
    let recorder = builder().digests(true).build();
    let report = recorder.verify(&path);
    assert!(lock.lock_report(&report), "{:?}", report.message);
    lock.write().unwrap();
    let victim = path.clone();
    let mut host = builder()
        .lock(lock, true)
        .before_load(move |_| {
            // Rewrite the same inode in place, provenance and all, between verification and
            // loading.
            rewrite_provenance(&victim, |p| p["target"] = "i686-unknown-linux-gnu".into());
        })
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let report = reports.iter().find(|r| r.path == path).unwrap();
    assert_eq!(report.status, Status::Loaded, "{:?}", report.message);
    let hello = host.registry().get::<CommandKind>("hello").unwrap();
    let out = hello.call(abi_stable::std_types::RSlice::from_slice(&[
        abi_stable::std_types::RStr::from("Ada"),
    ]));
    assert!(out.into_result().is_ok());
    // The file on disk is no longer the locked one.
    let again = host_with_lock(&lock_path).verify(&path);
    assert_eq!(again.reason.map(|r| r.as_str()), Some("checksum-mismatch"));
}

fn host_with_lock(lock_path: &Path) -> host::Host {
    builder()
        .lock(Lock::read(lock_path).unwrap(), false)
        .build()
}

#[test]
fn minisign_tool_signatures_accepted_tampered_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _, secret) = minisign_keypair(keys.path(), "author");
    let (other_key, _, other_secret) = minisign_keypair(keys.path(), "stranger");
    let dir = plugin_dir(&["hello", "wc", "redact"]);
    let hello = dir.path().join(file_name("hello"));
    let wc = dir.path().join(file_name("wc"));
    minisign_sign(&secret, &hello, false);
    minisign_sign(&secret, &wc, true); // legacy (`Ed`) signature
    let require = ["--trusted-key", key.as_str(), "--signatures", "require"];
    let scan = scan_json(dir.path(), &require);
    for file in ["libhello.so", "libwc.so"] {
        assert_eq!(entry(&scan, file)["status"], "loaded", "{scan:#}");
        assert_eq!(entry(&scan, file)["signature"], "signed");
    }
    assert_outcome(
        entry(&scan, "libredact.so"),
        "rejected",
        "unsigned",
        &[
            "not signed",
            "minisign -Sm FILE",
            "plugin-host sign FILE",
            "required",
        ],
    );
    assert_eq!(entry(&scan, "libredact.so")["signature"], "unsigned");

    // Under warn (the default once a key is trusted): loaded, with a warning.
    let scan = scan_json(dir.path(), &["--trusted-key", &key]);
    let redact = entry(&scan, "libredact.so");
    assert_eq!(redact["status"], "loaded");
    assert_eq!(redact["trust_warnings"][0]["reason"], "unsigned");
    let out = cli(&["scan", s(dir.path()), "--trusted-key", &key]);
    let table = stdout(&out);
    assert!(table.contains("libhello.so [signed]"), "{table}");
    assert!(table.contains("warning[unsigned]"), "{table}");
    // `transform` loads only redact (lazily), and says it is unsigned.
    let out = cli_with(
        &[
            "transform",
            "--plugins",
            s(dir.path()),
            "--trusted-key",
            &key,
            "redact",
        ],
        &[],
        Some(b"mail ada@example.com\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("ada@example.com"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("[unsigned]"), "{}", stderr(&out));

    // Signed by a key that is not trusted.
    minisign_sign(&other_secret, &dir.path().join("libredact.so"), false);
    let scan = scan_json(dir.path(), &require);
    assert_outcome(
        entry(&scan, "libredact.so"),
        "rejected",
        "untrusted-key",
        &["not trusted", "--trusted-key"],
    );
    let scan = scan_json(dir.path(), &["--trusted-key", &key]);
    assert_eq!(entry(&scan, "libredact.so")["status"], "loaded");
    assert_eq!(entry(&scan, "libredact.so")["signature"], "untrusted-key");
    // …trusted as well: signed.
    let both = scan_json(
        dir.path(),
        &["--trusted-key", &key, "--trusted-key", &other_key],
    );
    assert_eq!(entry(&both, "libredact.so")["signature"], "signed");

    // Tampered: one byte changed after signing; refused under warn too, code never runs.
    flip_comment_byte(&hello);
    for mode in ["warn", "require"] {
        let scan = scan_json(dir.path(), &["--trusted-key", &key, "--signatures", mode]);
        assert_outcome(
            entry(&scan, "libhello.so"),
            "rejected",
            "invalid-signature",
            &["does not match the file"],
        );
    }
    // The legacy signature breaks the same way.
    fs::OpenOptions::new()
        .append(true)
        .open(&wc)
        .unwrap()
        .write_all_at_end(b"x");
    let scan = scan_json(dir.path(), &require);
    assert_eq!(entry(&scan, "libwc.so")["reason"], "invalid-signature");
    // Ignored: not looked at.
    let scan = scan_json(
        dir.path(),
        &["--trusted-key", &key, "--signatures", "ignore"],
    );
    assert_eq!(entry(&scan, "libhello.so")["status"], "loaded");
    assert_eq!(
        entry(&scan, "libhello.so")["signature"],
        serde_json::Value::Null
    );
}

#[test]
fn garbage_signature_files_are_invalid_not_a_crash() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _, _) = minisign_keypair(keys.path(), "author");
    let dir = plugin_dir(&["hello"]);
    let sig = dir.path().join(format!("{}.minisig", file_name("hello")));
    let huge = vec![b'A'; 10 << 20];
    let cases: [&[u8]; 4] = [
        b"",
        b"\xff\xfe garbage",
        &huge,
        b"untrusted comment: x\nRWQ\n",
    ];
    for bytes in cases {
        fs::write(&sig, bytes).unwrap();
        let scan = scan_json(dir.path(), &["--trusted-key", &key]);
        assert_outcome(
            entry(&scan, "libhello.so"),
            "rejected",
            "invalid-signature",
            &["is invalid"],
        );
    }
}

#[test]
fn keygen_and_sign_interoperate_with_minisign() {
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("mine");
    let out = cli(&["keygen", "--out", s(&prefix)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (public, secret) = (work.path().join("mine.pub"), work.path().join("mine.key"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = cli(&["keygen", "--out", s(&prefix)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let key_line = fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(TrustedKey::parse(&key_line).is_ok());

    let dir = plugin_dir(&["hello", "wc"]);
    let hello = dir.path().join(file_name("hello"));
    let wc = dir.path().join(file_name("wc"));
    // Ours signs, the tool verifies.
    let out = cli(&["sign", s(&hello), "--key", s(&secret)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let verified = minisign(&["-V", "-p", s(&public), "-m", s(&hello)]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).contains("file:libhello.so"),
        "{}",
        stdout(&verified)
    );
    // The tool signs with our secret key; ours (the host) verifies.
    minisign_sign(&secret, &wc, false);
    let scan = scan_json(
        dir.path(),
        &["--trusted-key", s(&public), "--signatures", "require"],
    );
    for file in ["libhello.so", "libwc.so"] {
        assert_eq!(entry(&scan, file)["signature"], "signed", "{scan:#}");
        assert_eq!(entry(&scan, file)["status"], "loaded");
    }
    // The tool refuses a file changed after our signature, as the host does.
    flip_comment_byte(&hello);
    let refused = minisign(&["-V", "-p", s(&public), "-m", s(&hello)]);
    assert!(!refused.status.success());
}

#[test]
fn sign_replaces_a_link_planted_at_the_signature_and_leaves_its_target_alone() {
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("mine");
    let out = cli(&["keygen", "--out", s(&prefix)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (public, secret) = (work.path().join("mine.pub"), work.path().join("mine.key"));
    let dir = plugin_dir(&["hello"]);
    let hello = dir.path().join(file_name("hello"));
    let victim = work.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let signature = dir.path().join(format!("{}.minisig", file_name("hello")));
    std::os::unix::fs::symlink(&victim, &signature).unwrap();

    let out = cli(&["sign", s(&hello), "--key", s(&secret)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        fs::symlink_metadata(&signature).unwrap().is_file(),
        "the signature is not a regular file"
    );
    let verified = minisign(&["-V", "-p", s(&public), "-m", s(&hello)]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        !fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp.")),
        "a temporary file was left behind"
    );
}

#[test]
fn library_signature_modes_per_plugin() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _, _) = minisign_keypair(keys.path(), "author");
    let dir = plugin_dir(&["hello", "wc"]);
    let wc_path = dir.path().join("libwc.so");
    let strict = || {
        builder()
            .trusted_key(TrustedKey::parse(&key).unwrap())
            .signatures(SignatureMode::Require)
    };
    // A mode stricter than the host's follows the name; an exemption follows the file.
    let wc = host::PluginSettings::new()
        .signatures(SignatureMode::Ignore)
        .file(&wc_path);
    let host = strict().plugin("wc", wc).build();
    assert_eq!(host.signature_mode("hello"), SignatureMode::Require);
    assert_eq!(host.signature_mode("wc"), SignatureMode::Ignore);
    let hello = host.verify(&dir.path().join("libhello.so"));
    assert_eq!(hello.reason.map(|r| r.as_str()), Some("unsigned"));
    let wc = host.verify(&wc_path);
    assert_eq!(wc.status, Status::Verified, "{:?}", wc.message);
    assert_eq!(wc.signature, None);
}

#[test]
fn an_exemption_does_not_follow_a_self_declared_name() {
    // `[plugins.hello] signatures = "ignore"` under a global `require`: an impostor that
    // calls itself `hello`, dropped where the configured file is not, is held to `require`.
    let keys = tempfile::tempdir().unwrap();
    let (key, _, _) = minisign_keypair(keys.path(), "author");
    let dir = plugin_dir(&["hello"]);
    let configured = dir.path().join("libhello.so");
    let early = tempfile::tempdir().unwrap();
    let impostor = copy_into(&early, "hello", "libevil_hello.so");
    let host = || {
        builder()
            .trusted_key(TrustedKey::parse(&key).unwrap())
            .signatures(SignatureMode::Require)
            .plugin(
                "hello",
                host::PluginSettings::new().signatures(SignatureMode::Ignore),
            )
    };
    // Not bound to any file: the exemption applies to none.
    let evil = host().build().verify(&impostor);
    assert_eq!(evil.status, Status::Rejected);
    assert_eq!(evil.reason.map(|r| r.as_str()), Some("unsigned"));
    let message = evil.message.unwrap();
    for needle in [
        "signatures = \"ignore\"",
        "applies only to the file at its configured `path`",
        "libevil_hello.so",
        "[plugins.hello]",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // Bound by the configured path: the configured file is exempt, the impostor is not.
    let bound = host()
        .plugin("hello", host::PluginSettings::new().file(&configured))
        .build();
    assert_eq!(bound.verify(&configured).status, Status::Verified);
    let mut scanning = host()
        .plugin("hello", host::PluginSettings::new().file(&configured))
        .build();
    let reports = scanning
        .scan(&[early.path(), dir.path()], ScanMode::VerifyOnly)
        .unwrap();
    let evil = reports.iter().find(|r| r.path == impostor).unwrap();
    assert_eq!(
        evil.reason.map(|r| r.as_str()),
        Some("unsigned"),
        "{reports:?}"
    );
    // Not by a lock: a lock may come from the working directory, where anyone's checkout
    // may have put one listing the impostor.
    let lock_path = early.path().join("plugin-host.lock");
    let mut lock = Lock::new(&lock_path);
    let recorder = host()
        .digests(true)
        .signatures(SignatureMode::Ignore)
        .build();
    assert!(lock.lock_report(&recorder.verify(&impostor)));
    lock.write().unwrap();
    let locked = host().lock(Lock::read(&lock_path).unwrap(), true).build();
    let evil = locked.verify(&impostor);
    assert_eq!(evil.reason.map(|r| r.as_str()), Some("unsigned"));
}

/// Truncates `path` in place (same inode): what a write between verification and loading
/// does to a library mapped from the file itself.
fn truncate_in_place(path: &Path) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

#[test]
fn load_in_place_loads_the_hashed_copy_when_a_lock_or_signature_vouches() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _, secret) = minisign_keypair(keys.path(), "author");
    let load = |host: host::HostBuilder, dir: &Path| {
        let path = dir.join(file_name("hello"));
        let mut host = host
            .load_from(LoadFrom::File)
            .before_load(truncate_in_place)
            .build();
        let reports = host.scan(&[dir], ScanMode::Load).unwrap();
        let report = reports.into_iter().find(|r| r.path == path).unwrap();
        let works = host
            .registry()
            .get::<CommandKind>("hello")
            .is_ok_and(|hello| {
                hello
                    .call(abi_stable::std_types::RSlice::from_slice(&[
                        abi_stable::std_types::RStr::from("Ada"),
                    ]))
                    .into_result()
                    .is_ok()
            });
        (report, works)
    };
    // The control: nothing vouches for the file, so `LoadFrom::File` maps the file itself —
    // emptied after verification, it cannot be loaded.
    let plain = plugin_dir(&["hello"]);
    let (report, works) = load(builder(), plain.path());
    assert_eq!(report.status, Status::Failed, "{:?}", report.message);
    assert!(!works);
    // Locked: the sealed copy that was hashed is what the loader maps.
    let locked = plugin_dir(&["hello"]);
    let lock_path = locked.path().join("plugin-host.lock");
    let mut lock = Lock::new(&lock_path);
    assert!(lock.lock_report(
        &builder()
            .digests(true)
            .build()
            .verify(&locked.path().join(file_name("hello")))
    ));
    lock.write().unwrap();
    let (report, works) = load(builder().lock(lock, true), locked.path());
    assert_eq!(report.status, Status::Loaded, "{:?}", report.message);
    assert!(works);
    // Signatures required: the same.
    let signed = plugin_dir(&["hello"]);
    minisign_sign(&secret, &signed.path().join(file_name("hello")), false);
    let host = builder()
        .trusted_key(TrustedKey::parse(&key).unwrap())
        .signatures(SignatureMode::Require);
    let (report, works) = load(host, signed.path());
    assert_eq!(report.status, Status::Loaded, "{:?}", report.message);
    assert_eq!(report.signature, Some(host::SignatureStatus::Signed));
    assert!(works);
}

#[test]
fn a_key_given_as_a_key_is_that_key_whatever_a_file_of_its_name_holds() {
    let keys = tempfile::tempdir().unwrap();
    // A key whose text ends with `/` (one in 64) names a directory, never a file: made again.
    let (key, author_pub, secret) = (0..)
        .map(|n| minisign_keypair(keys.path(), &format!("author{n}")))
        .find(|(key, _, _)| !key.ends_with('/'))
        .unwrap();
    let (_, stranger_pub, _) = minisign_keypair(keys.path(), "stranger");
    let dir = plugin_dir(&["hello"]);
    minisign_sign(&secret, &dir.path().join(file_name("hello")), false);
    // A checkout holding a file named like the key (a key's `/` makes directories), which
    // holds another key.
    let checkout = tempfile::tempdir().unwrap();
    let planted = checkout.path().join(&key);
    fs::create_dir_all(planted.parent().unwrap()).unwrap();
    fs::copy(&stranger_pub, &planted).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args(["scan", s(dir.path()), "--json"])
        .args(["--trusted-key", &key, "--signatures", "require"])
        .current_dir(checkout.path())
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hello = entry(&scan, "libhello.so");
    assert_eq!(hello["status"], "loaded", "{scan:#}");
    assert_eq!(hello["signature"], "signed", "{scan:#}");
    // A path to a key file is still read as one.
    let by_path = ["--trusted-key", s(&author_pub), "--signatures", "require"];
    let scan = scan_json(dir.path(), &by_path);
    assert_eq!(
        entry(&scan, "libhello.so")["signature"],
        "signed",
        "{scan:#}"
    );
}

/// A legacy minisign signature (`Ed`, the whole file signed) by `key`'s id that checks
/// nothing: zero signatures. Enough to make the host check the file against it.
fn legacy_signature_by(key: &str) -> String {
    let key = host::TrustedKey::parse(key).unwrap();
    let id = u64::from_str_radix(&key.id(), 16).unwrap();
    let mut sig = b"Ed".to_vec();
    sig.extend(id.to_le_bytes());
    sig.extend([0u8; 64]);
    format!(
        "untrusted comment: x\n{}\ntrusted comment: x\n{}\n",
        base64_encode(&sig),
        base64_encode(&[0u8; 64])
    )
}

#[test]
fn a_huge_file_is_refused_before_it_is_hashed_or_kept_for_its_signature() {
    const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // A plugin grown to 4 GiB with a hole (no disk space), signed the legacy way by the
    // trusted key's id: the whole file would be read into memory to check it.
    let huge = p.join("huge.so");
    fs::copy(crate::fixtures::fixtures().lib("hello"), &huge).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    fs::write(p.join("huge.so.minisig"), legacy_signature_by(KEY)).unwrap();
    // Under the size a plugin may be, but over what a legacy signature is checked over.
    let legacy = p.join("legacy.so");
    fs::copy(crate::fixtures::fixtures().lib("wc"), &legacy).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&legacy)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    fs::write(p.join("legacy.so.minisig"), legacy_signature_by(KEY)).unwrap();
    let started = std::time::Instant::now();
    let out = cli_under_memory_limit(
        &["scan", s(p), "--json", "--no-load", "--trusted-key", KEY],
        64 << 20,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("over the memory ceiling? {}", stderr(&out)));
    assert_outcome(
        entry(&scan, "huge.so"),
        "rejected",
        "invalid-signature",
        &["4294967296 bytes", "1 GiB", "checked against its signature"],
    );
    assert_outcome(
        entry(&scan, "legacy.so"),
        "rejected",
        "invalid-signature",
        &["legacy signature", "prehashing"],
    );
}

#[test]
fn a_locked_name_on_a_file_of_another_size_is_refused_without_hashing_it() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let file = plugins.join(file_name("hello"));
    fs::copy(crate::fixtures::fixtures().lib("hello"), &file).unwrap();
    let lock_path = root.path().join("plugin-host.lock");
    let out = lock(&plugins, &lock_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let size = fs::metadata(&file).unwrap().len();
    // The locked plugin grown to a terabyte with a hole: hashing it would take many minutes.
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let started = std::time::Instant::now();
    let scan = scan_json(&plugins, &["--lock-file", s(&lock_path)]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_outcome(
        entry(&scan, &file_name("hello")),
        "rejected",
        "checksum-mismatch",
        &[
            "1099511627776 bytes",
            &format!("expects {size} bytes"),
            "plugin-host lock",
        ],
    );
}

#[test]
fn locking_again_keeps_where_the_same_bytes_were_pulled_from() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    for name in ["hello", "wc"] {
        fs::copy(
            crate::fixtures::fixtures().lib(name),
            plugins.join(file_name(name)),
        )
        .unwrap();
    }
    let lock_path = root.path().join("plugin-host.lock");
    assert!(lock(&plugins, &lock_path).status.success());
    // As `pull` writes them: where each came from.
    let pulled = |name: &str| {
        format!(
            "source = \"oci://127.0.0.1:5000/t/{name}:1\"\nmanifest = \"sha256:{}\"\n",
            "a".repeat(64)
        )
    };
    let text = fs::read_to_string(&lock_path).unwrap();
    let text = text
        .replace(
            "name = \"hello\"\n",
            &format!("name = \"hello\"\n{}", pulled("hello")),
        )
        .replace(
            "name = \"wc\"\n",
            &format!("name = \"wc\"\n{}", pulled("wc")),
        );
    fs::write(&lock_path, &text).unwrap();
    let before = Lock::read(&lock_path).unwrap();
    assert!(before.get("hello").unwrap().source.is_some(), "{text}");
    // `wc` is rebuilt (other bytes); `hello` is the same file.
    let mut wc = fs::OpenOptions::new()
        .append(true)
        .open(plugins.join(file_name("wc")))
        .unwrap();
    std::io::Write::write_all(&mut wc, b"\0").unwrap();
    let out = lock(&plugins, &lock_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = Lock::read(&lock_path).unwrap();
    let hello = after.get("hello").unwrap();
    assert_eq!(hello.source, before.get("hello").unwrap().source);
    assert_eq!(hello.manifest, before.get("hello").unwrap().manifest);
    // Other bytes were not pulled from there.
    assert_eq!(after.get("wc").unwrap().source, None);
    assert_eq!(after.get("wc").unwrap().manifest, None);
}

#[test]
fn sign_takes_regular_files_and_any_name_gives_a_signature_that_checks() {
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("k");
    assert!(cli(&["keygen", "--out", s(&prefix)]).status.success());
    let (public, secret) = (work.path().join("k.pub"), work.path().join("k.key"));
    // A FIFO: refused at once (it was opened blocking, and waited for a writer forever).
    let fifo = work.path().join("fifo.so");
    let c_fifo = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let (done, finished) = std::sync::mpsc::channel();
    let (f, k) = (fifo.clone(), secret.clone());
    std::thread::spawn(move || {
        let _ = done.send(cli(&["sign", s(&f), "--key", s(&k)]));
    });
    let out = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("sign hung on a FIFO");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    // A name with a line break: its signature is still one that checks.
    let dir = plugin_dir(&["hello"]);
    let odd = dir.path().join("libhel\nlo.so");
    fs::rename(dir.path().join(file_name("hello")), &odd).unwrap();
    let out = cli(&["sign", s(&odd), "--key", s(&secret)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let scan = scan_json(
        dir.path(),
        &["--trusted-key", s(&public), "--signatures", "require"],
    );
    let entry = &scan["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hello")
        .unwrap_or_else(|| panic!("{scan:#}"))
        .clone();
    assert_eq!(entry["status"], "loaded", "{entry:#}");
    assert_eq!(entry["signature"], "signed", "{entry:#}");
}
