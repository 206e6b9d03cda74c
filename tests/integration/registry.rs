//! Plugins from an OCI registry, against a real one: Debian's `docker-registry` (distribution
//! 2.8) serving on a free loopback port, and `skopeo` to see what was published as another
//! OCI tool sees it. `.ci/run` installs both and sets `PLUGIN_HOST_TEST_REGISTRY=1`, which
//! makes a missing one a failure rather than a skip.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Machine;
use crate::support::{file_name, rewrite_provenance, stderr, stdout};

/// A registry on a free loopback port, stopped when dropped.
pub(crate) struct Registry {
    child: Child,
    addr: String,
    storage: tempfile::TempDir,
}

impl Registry {
    /// Starts one, or `None` (skip) where `docker-registry` is not installed and the run does
    /// not require it.
    pub(crate) fn start() -> Option<Registry> {
        Registry::start_with("")
    }

    /// [`Registry::start`], with `extra` appended to its configuration.
    fn start_with(extra: &str) -> Option<Registry> {
        if Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("PLUGIN_HOST_TEST_REGISTRY").is_none(),
                "docker-registry is not installed (apt-get install docker-registry)"
            );
            eprintln!("skipped: docker-registry is not installed");
            return None;
        }
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{extra}",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            addr,
            storage,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.addr).is_err() {
            assert!(Instant::now() < until, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    pub(crate) fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.addr)
    }

    /// The file holding blob `digest` in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `skopeo inspect --raw` of `path`: what another OCI tool sees.
    fn skopeo_raw(&self, path: &str) -> Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{path}", self.addr))
            .output();
        let out = match out {
            Ok(out) => out,
            Err(_) => {
                assert!(
                    std::env::var_os("PLUGIN_HOST_TEST_REGISTRY").is_none(),
                    "skopeo is not installed"
                );
                return Value::Null;
            }
        };
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the fixture library `name` in a fresh directory.
fn library(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name(name));
    fs::copy(crate::fixtures::fixtures().lib(name), &path).unwrap();
    (dir, path)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn fails(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{}{err}", stdout(out));
    for needle in needles {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    err
}

/// `plugin-host pull REFERENCE --dir DIR EXTRA...` on machine `m`.
fn pull_into(m: &Machine, reference: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["pull", reference, "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    m.run(&args, None)
}

/// The names of what a directory holds, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn publish_pull_run_and_what_another_oci_tool_sees() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let (_src, hello) = library("hello");
    let to = registry.reference("team/hello:1");
    let published = ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    assert!(
        published.contains("published hello 0.1.0 for plugin-host"),
        "{published}"
    );

    // Interop: the tag is an OCI index whose entry names the build; the build is an OCI
    // artifact manifest with the library as a layer of its own media type.
    let index = registry.skopeo_raw("team/hello:1");
    if !index.is_null() {
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let entry = &index["manifests"][0];
        assert_eq!(entry["annotations"]["dev.plugin-host.plugin.name"], "hello");
        assert_eq!(entry["platform"]["os"], "linux");
        let digest = entry["digest"].as_str().unwrap();
        let manifest = registry.skopeo_raw(&format!("team/hello@{digest}"));
        assert_eq!(
            manifest["artifactType"],
            "application/vnd.plugin-host.plugin.v1"
        );
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.plugin-host.library.v1"
        );
        assert_eq!(
            manifest["annotations"]["dev.plugin-host.target"],
            crate::support::host_info()["target"]
        );
    }

    let dir = m.path("plugins");
    let lock = m.path("plugin-host.lock");
    let pulled = ok(&pull_into(
        &m,
        &to,
        &dir,
        &["--lock-file", lock.to_str().unwrap()],
    ));
    assert!(pulled.starts_with("pulled hello 0.1.0 from"), "{pulled}");
    assert_eq!(listing(&dir), [file_name("hello")]);
    let run = m.run(
        &["run", "--plugins", dir.to_str().unwrap(), "hello", "Ada"],
        None,
    );
    assert!(ok(&run).starts_with("hello, Ada!"));
    let text = fs::read_to_string(&lock).unwrap();
    assert!(text.contains(&format!("source = \"{to}\"")), "{text}");
    assert!(text.contains("manifest = \"sha256:"), "{text}");
    // And the lock holds: a locked run loads it.
    let run = m.run(
        &[
            "run",
            "--plugins",
            dir.to_str().unwrap(),
            "--lock-file",
            lock.to_str().unwrap(),
            "--locked",
            "hello",
            "Bo",
        ],
        None,
    );
    assert!(ok(&run).starts_with("hello, Bo!"));
}

#[test]
fn two_host_versions_under_one_tag_each_host_pulls_its_own() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let (_a, hello) = library("hello");
    let (_b, wc) = library("wc");
    let to = registry.reference("team/tools:stable");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    ok(&m.run(
        &[
            "publish",
            wc.to_str().unwrap(),
            &to,
            "--for-host",
            "plugin-host@0.0.9",
        ],
        None,
    ));
    // This host gets the build for its own version.
    let dir = m.path("plugins");
    let pulled = ok(&pull_into(&m, &to, &dir, &[]));
    assert!(pulled.starts_with("pulled hello 0.1.0"), "{pulled}");
    // A host of version 0.0.9 gets the other (same target): the library's own pull, with that
    // host's identity.
    let mut identity = host::HostIdentity::from_blob(plugin_api::provenance_blob!()).unwrap();
    identity.version = "0.0.9".to_owned();
    let old = host::Host::builder(identity).digests(true).build();
    let other = tempfile::tempdir().unwrap();
    let reference = plugin_registry::Reference::parse(&to).unwrap();
    let source = plugin_registry::Source::online(&reference, false, None).unwrap();
    let options = plugin_registry::PullOptions {
        dir: other.path(),
        lock: None,
        locked: false,
        expect: Some("wc"),
    };
    let pulled = plugin_registry::pull(&source, &reference, &old, options).unwrap();
    assert_eq!((pulled.name.as_str(), pulled.exact), ("wc", true));
    assert_eq!(listing(other.path()), [file_name("wc")]);
    // Publishing again for the same host and target replaces that build, never adds one.
    let again = ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    assert!(again.starts_with("replaced hello"), "{again}");
    let index = registry.skopeo_raw("team/tools:stable");
    if !index.is_null() {
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn no_build_for_this_host_lists_what_the_tag_has() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let (_a, hello) = library("hello");
    rewrite_provenance(&hello, |p| p["target"] = "i686-unknown-linux-gnu".into());
    let to = registry.reference("team/hello:arm");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    let dir = m.path("plugins");
    let out = pull_into(&m, &to, &dir, &[]);
    let info = crate::support::host_info();
    let target = format!("target {}", info["target"].as_str().unwrap());
    let other = format!(
        "hello ({} {} on i686-unknown-linux-gnu)",
        info["name"].as_str().unwrap(),
        info["version"].as_str().unwrap()
    );
    fails(&out, &["has no build for this host", &target, &other]);
    assert!(listing(&dir).is_empty());
}

#[test]
fn a_tampered_blob_or_a_refused_build_leaves_the_directory_as_it_was() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let dir = m.path("plugins");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("keep.txt"), "mine").unwrap();

    // A blob changed in the registry's storage: the digest check refuses it.
    let (_a, hello) = library("hello");
    let to = registry.reference("team/hello:1");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    let index: Value = registry.skopeo_raw("team/hello:1");
    let library_digest = if index.is_null() {
        None
    } else {
        let build = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let manifest = registry.skopeo_raw(&format!("team/hello@{build}"));
        Some(manifest["layers"][0]["digest"].as_str().unwrap().to_owned())
    };
    if let Some(digest) = library_digest {
        let blob = registry.blob_file(&digest);
        let mut bytes = fs::read(&blob).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        fs::write(&blob, bytes).unwrap();
        let out = pull_into(&m, &to, &dir, &[]);
        fails(&out, &["does not match its digest", "nothing was placed"]);
        assert_eq!(listing(&dir), ["keep.txt"]);
    }

    // A build this host refuses (another compiler claimed): judged before it is placed.
    let (_b, skewed) = library("hello");
    rewrite_provenance(&skewed, |p| {
        p["rustc"]["commit_hash"] = "1".repeat(40).into()
    });
    let to = registry.reference("team/skewed:1");
    ok(&m.run(&["publish", skewed.to_str().unwrap(), &to], None));
    fails(
        &pull_into(&m, &to, &dir, &["--policy", "strict"]),
        &[
            "is refused by this host",
            "[rustc-mismatch]",
            "nothing was placed",
        ],
    );
    assert_eq!(listing(&dir), ["keep.txt"]);
}

#[test]
fn locked_refuses_a_tag_that_moved() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let dir = m.path("plugins");
    let lock = m.path("plugin-host.lock");
    let (_a, hello) = library("hello");
    let to = registry.reference("team/hello:latest");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    let pull = |locked: bool| {
        let lock = ["--lock-file", lock.to_str().unwrap(), "--locked"];
        pull_into(&m, &to, &dir, &lock[..if locked { 3 } else { 2 }])
    };
    ok(&pull(false));
    ok(&pull(true));
    // Another build under the same tag (signed now: another manifest).
    let keys = m.path("keys");
    fs::create_dir_all(&keys).unwrap();
    let (_, _, secret) = crate::trust::minisign_keypair(&keys, "author");
    crate::trust::minisign_sign(&secret, &hello, false);
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    let out = pull(true);
    fails(
        &out,
        &["now names manifest", "but the lock pins", "--locked"],
    );
    // Without --locked it takes the new build, with its signature, and pins it.
    let pulled = ok(&pull(false));
    assert!(pulled.starts_with("pulled hello"), "{pulled}");
    assert!(dir.join(format!("{}.minisig", file_name("hello"))).exists());
    ok(&pull(true));
}

#[test]
fn registry_errors_are_exit_2_and_say_what_to_do() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let dir = m.path("plugins");
    let missing = registry.reference("team/none:1");
    fails(
        &pull_into(&m, &missing, &dir, &[]),
        &["is not in the registry (404)"],
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("oci://127.0.0.1:{port}/team/x:1");
    fails(&pull_into(&m, &down, &dir, &[]), &["is unreachable"]);
    fails(
        &m.run(&["pull", "docker://x/y:1", "--dir", "d"], None),
        &["must start with `oci://`"],
    );
    let text = m.write("notes.txt", "not a library");
    fails(
        &m.run(
            &[
                "publish",
                text.to_str().unwrap(),
                &registry.reference("team/x:1"),
            ],
            None,
        ),
        &["is not a plugin build"],
    );
    assert!(listing(&dir).is_empty());
}

#[test]
fn sync_installs_what_is_declared_and_missing_and_works_offline() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let (_a, hello) = library("hello");
    let (_b, wc) = library("wc");
    let hello_ref = registry.reference("team/hello:1");
    let wc_ref = registry.reference("team/wc:1");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &hello_ref], None));
    ok(&m.run(&["publish", wc.to_str().unwrap(), &wc_ref], None));
    let plugins = m.path("proj/plugins");
    fs::create_dir_all(&plugins).unwrap();
    m.project(&format!(
        "[search]\npaths = [\"plugins\"]\n\n[plugins.hello]\nsource = \"{hello_ref}\"\n\n[plugins.wc]\nsource = \"{wc_ref}\"\n"
    ));
    let out = ok(&m.run(&["sync"], None));
    assert!(
        out.contains("pulled hello") && out.contains("pulled wc"),
        "{out}"
    );
    assert_eq!(listing(&plugins), [file_name("hello"), file_name("wc")]);
    assert!(fs::read_to_string(m.path("proj/plugin-host.lock"))
        .unwrap()
        .contains(&format!("source = \"{wc_ref}\"")));
    let out = ok(&m.run(&["sync"], None));
    assert_eq!(out, "present hello\npresent wc\n");
    // Offline, from the cache the first sync filled: the registry is gone.
    drop(registry);
    fs::remove_file(plugins.join(file_name("wc"))).unwrap();
    let out = ok(&m.run(&["sync", "--offline"], None));
    assert!(
        out.contains("present hello") && out.contains("pulled wc"),
        "{out}"
    );
    // And a plugin the cache never saw is an error naming the cache.
    fs::remove_file(plugins.join(file_name("wc"))).unwrap();
    fs::remove_dir_all(m.path("home/.cache/plugin-host/oci")).unwrap();
    fails(
        &m.run(&["sync", "--offline"], None),
        &["is not in the cache", "--offline fetches nothing"],
    );
}

/// A fake registry on a free loopback port: each request whose path ends in a route's suffix
/// gets that route's content type and body — cut in half when the route says so (a registry
/// that dies mid-transfer) — and anything else 404.
fn fake_registry(routes: Vec<(String, &'static str, Vec<u8>, bool)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            match routes.iter().find(|r| path.ends_with(&r.0)) {
                Some((_, content_type, body, cut)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let sent = if *cut {
                        &body[..body.len() / 2]
                    } else {
                        &body[..]
                    };
                    let _ = stream.write_all(sent);
                }
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    addr
}

/// A server that answers every request with `response`, bytes as they are.
fn raw_server(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let _ = stream.write_all(&response);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    addr
}

#[test]
fn a_redirect_is_no_manifest() {
    // A 302 whose body is a manifest: not read as the answer (only blob downloads follow
    // redirects, to HTTPS or loopback).
    let m = Machine::new();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST, "layers": []});
    let body = serde_json::to_vec(&manifest).unwrap();
    let mut response = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Type: {MANIFEST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let addr = raw_server(response);
    let out = pull_into(
        &m,
        &format!("oci://{addr}/team/x:1"),
        &m.path("plugins"),
        &[],
    );
    fails(
        &out,
        &["302", "a redirect, which only a blob download follows"],
    );
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn an_oversized_manifest_or_a_layer_that_is_not_a_library_is_refused() {
    let m = Machine::new();
    let dir = m.path("plugins");
    // An index of 5 MiB: more than any manifest is read.
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec();
    huge.resize(5 << 20, b' ');
    let addr = fake_registry(vec![("/manifests/1".to_owned(), INDEX, huge, false)]);
    let out = pull_into(&m, &format!("oci://{addr}/team/x:1"), &dir, &[]);
    fails(&out, &["is larger than 4194304 bytes"]);
    // A build whose library layer holds a text file: the host refuses it before placing it.
    let text = b"#!/bin/sh\necho not a library\n".to_vec();
    let target = crate::support::host_info()["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let empty = b"{}".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.plugin-host.library.v1", "digest": sha256(&text),
                    "size": text.len(), "annotations": {"org.opencontainers.image.title": "libx.so"}}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": sha256(&manifest), "size": manifest.len(),
                       "annotations": {"dev.plugin-host.target": target, "dev.plugin-host.plugin.name": "x"}}],
    });
    let routes = vec![
        (
            format!("/manifests/{}", sha256(&manifest)),
            MANIFEST,
            manifest.clone(),
            false,
        ),
        (
            "/manifests/1".to_owned(),
            INDEX,
            serde_json::to_vec(&index).unwrap(),
            false,
        ),
        (
            format!("/blobs/{}", sha256(&text)),
            "application/octet-stream",
            text.clone(),
            false,
        ),
    ];
    let addr = fake_registry(routes);
    let out = pull_into(&m, &format!("oci://{addr}/team/x:1"), &dir, &[]);
    fails(&out, &["is refused by this host", "nothing was placed"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn a_registry_that_dies_mid_pull_leaves_the_directory_as_it_was() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let (_a, hello) = library("hello");
    let to = registry.reference("team/hello:1");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    // What the real registry holds, replayed by one that dies halfway through the library.
    let fetch = |path: &str| -> Vec<u8> {
        let mut stream = TcpStream::connect(&registry.addr).unwrap();
        write!(stream, "GET /v2/team/hello/{path} HTTP/1.0\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n").unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        all[at..].to_vec()
    };
    let index = fetch("manifests/1");
    let parsed: Value = serde_json::from_slice(&index).unwrap();
    let build = parsed["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest = fetch(&format!("manifests/{build}"));
    let parsed: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = parsed["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = fetch(&format!("blobs/{layer}"));
    let routes = vec![
        (
            format!("/blobs/{layer}"),
            "application/octet-stream",
            blob,
            true,
        ),
        (format!("/manifests/{build}"), MANIFEST, manifest, false),
        ("/manifests/1".to_owned(), INDEX, index, false),
    ];
    let addr = fake_registry(routes);
    let dir = m.path("plugins");
    fs::create_dir_all(&dir).unwrap();
    let old = dir.join(file_name("hello"));
    fs::write(&old, "the old build").unwrap();
    let out = pull_into(&m, &format!("oci://{addr}/team/hello:1"), &dir, &[]);
    fails(&out, &["blob sha256:"]);
    assert_eq!(listing(&dir), [file_name("hello")]);
    assert_eq!(fs::read_to_string(&old).unwrap(), "the old build");
}

#[test]
fn locked_takes_the_pinned_build_or_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let dir = m.path("plugins");
    let lock = m.path("plugin-host.lock");
    let lock_args = ["--lock-file", lock.to_str().unwrap()];
    let (_a, hello) = library("hello");
    let (_b, wc) = library("wc");
    let to = registry.reference("team/tools:1");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    ok(&pull_into(&m, &to, &dir, &lock_args));
    // Another build under the tag, for another host version: a fallback the pin excludes.
    let for_other = [
        "publish",
        wc.to_str().unwrap(),
        &to,
        "--for-host",
        "plugin-host@0.0.9",
    ];
    ok(&m.run(&for_other, None));
    // The pinned build is now refused (signatures required, and it has none): --locked
    // takes nothing else.
    let keys = m.path("keys");
    fs::create_dir_all(&keys).unwrap();
    let (key, _, _) = crate::trust::minisign_keypair(&keys, "author");
    let strict = [
        "--lock-file",
        lock.to_str().unwrap(),
        "--locked",
        "--signatures",
        "require",
        "--trusted-key",
        &key,
    ];
    fails(
        &pull_into(&m, &to, &dir, &strict),
        &["[unsigned]", "nothing was placed"],
    );
    assert_eq!(listing(&dir), [file_name("hello")]);
}

#[test]
fn the_registry_names_neither_the_file_nor_a_path() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let dir = m.path("plugins");
    // A `hello` build whose layer is titled as another plugin's file: placed as hello's.
    let src = tempfile::tempdir().unwrap();
    let disguised = src.path().join(file_name("wc"));
    fs::copy(crate::fixtures::fixtures().lib("hello"), &disguised).unwrap();
    let to = registry.reference("team/hello:1");
    ok(&m.run(&["publish", disguised.to_str().unwrap(), &to], None));
    ok(&pull_into(&m, &to, &dir, &[]));
    assert_eq!(listing(&dir), [file_name("hello")]);
    // An index whose entry's digest is a path: refused before it names a URL or a file.
    let victim = m.write("victim.txt", "precious");
    let target = crate::support::host_info()["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": victim.to_str().unwrap(), "size": 1,
                       "annotations": {"dev.plugin-host.target": target}}],
    });
    let routes = vec![(
        "/manifests/1".to_owned(),
        INDEX,
        serde_json::to_vec(&index).unwrap(),
        false,
    )];
    let addr = fake_registry(routes);
    let out = pull_into(&m, &format!("oci://{addr}/team/x:1"), &dir, &[]);
    fails(&out, &["is not `sha256:` and 64 lowercase hex digits"]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(listing(&dir), [file_name("hello")]);
}

#[test]
fn a_pull_replaces_no_plugin_it_did_not_bring_from_the_same_repository() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let m = Machine::new();
    let dir = m.path("plugins");
    let (_src, hello) = library("hello");
    let (_src2, wc) = library("wc");
    let ours = registry.reference("team/hello:1");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &ours], None));
    let lock = m.path("plugin-host.lock");
    let with_lock = ["--lock-file", lock.to_str().unwrap()];
    ok(&pull_into(&m, &ours, &dir, &with_lock));
    let pinned = fs::read_to_string(&lock).unwrap();
    // Another repository serving a build of `hello`: it may not choose to replace the
    // `hello` this directory holds from `team/hello`, nor re-pin it.
    let other = registry.reference("team/other:1");
    ok(&m.run(&["publish", hello.to_str().unwrap(), &other], None));
    fails(
        &pull_into(&m, &other, &dir, &with_lock),
        &[
            "it is plugin `hello`",
            "from oci://",
            "team/hello:1",
            "remove",
        ],
    );
    assert_eq!(fs::read_to_string(&lock).unwrap(), pinned);
    // A plugin installed by hand is not replaced by a pull either.
    fs::copy(&wc, dir.join(file_name("wc"))).unwrap();
    let wc_ref = registry.reference("team/wc:1");
    ok(&m.run(&["publish", wc.to_str().unwrap(), &wc_ref], None));
    fails(
        &pull_into(&m, &wc_ref, &dir, &with_lock),
        &["it is plugin `wc`", "not from this repository"],
    );
    assert_eq!(listing(&dir), [file_name("hello"), file_name("wc")]);
    // The same repository again: replaced, as an update is.
    ok(&pull_into(&m, &ours, &dir, &with_lock));
}

#[test]
fn a_registry_that_asks_for_credentials_gets_those_of_the_usual_file() {
    // An htpasswd (bcrypt) user, made with Python's crypt as `htpasswd -B` would.
    let htpasswd = tempfile::tempdir().unwrap();
    let made = Command::new("python3")
        .args(["-W", "ignore", "-c", "import crypt; print('ada:' + crypt.crypt('secret', crypt.mksalt(crypt.METHOD_BLOWFISH)))"])
        .output()
        .expect("python3");
    assert!(made.status.success(), "{}", stderr(&made));
    let file = htpasswd.path().join("htpasswd");
    fs::write(&file, &made.stdout).unwrap();
    let extra = format!(
        "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
        file.display()
    );
    let Some(registry) = Registry::start_with(&extra) else {
        return;
    };
    let m = Machine::new();
    let (_a, hello) = library("hello");
    let to = registry.reference("team/hello:1");
    // No credentials: 401, said as such.
    let out = m.run(&["publish", hello.to_str().unwrap(), &to], None);
    fails(
        &out,
        &[
            "refused access",
            "401",
            "no credentials for",
            "docker login",
        ],
    );
    // Wrong ones: 401 again.
    let auth = |user_password: &str| {
        use crate::support::base64_encode as b64;
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            registry.addr,
            b64(user_password.as_bytes())
        )
    };
    m.write("home/.docker/config.json", &auth("ada:wrong"));
    fails(
        &m.run(&["publish", hello.to_str().unwrap(), &to], None),
        &["refused access", "401"],
    );
    // The right ones, from ~/.docker/config.json: publish and pull.
    m.write("home/.docker/config.json", &auth("ada:secret"));
    ok(&m.run(&["publish", hello.to_str().unwrap(), &to], None));
    let dir = m.path("plugins");
    ok(&pull_into(&m, &to, &dir, &[]));
    assert_eq!(listing(&dir), [file_name("hello")]);
}
