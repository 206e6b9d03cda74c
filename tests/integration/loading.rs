//! What the loader maps: a sealed private copy of the verified file (so writing to the plugin
//! file later cannot reach the host), under a name whose `$ORIGIN` is the plugin's own
//! directory, with no descriptor kept per plugin.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::fixtures::{cargo, fixtures, root};
use crate::support::*;

#[test]
fn overwriting_a_loaded_plugin_in_place_does_not_reach_the_host() {
    let dir = plugin_dir(&["redact"]);
    let plugin = dir.path().join(file_name("redact"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args([
            "transform",
            "--plugins",
            dir.path().to_str().unwrap(),
            "redact",
        ])
        .env("PLUGIN_HOST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(input, "mail ada@example.com now").unwrap();
    input.flush().unwrap();
    output.read_line(&mut line).unwrap();
    assert!(
        line.contains("[email]") || !line.contains("ada@example.com"),
        "{line}"
    );

    // `cp other.so plugins/libredact.so`: the same inode, truncated and rewritten.
    fs::write(&plugin, fs::read(fixtures().lib("hello")).unwrap()).unwrap();
    fs::write(&plugin, b"garbage").unwrap();

    for _ in 0..1000 {
        writeln!(input, "mail bob@example.org from 10.1.2.3").unwrap();
    }
    drop(input);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the host died: {status:?}");
    assert_eq!(rest.lines().count(), 1000);
    assert!(
        !rest.contains("bob@example.org") && !rest.contains("10.1.2.3"),
        "{rest}"
    );
}

#[test]
fn a_write_while_loading_is_refused_before_any_of_it_runs() {
    let dir = plugin_dir(&["hello"]);
    let plugin = dir.path().join(file_name("hello"));
    let mut host = builder()
        .before_load(move |path| {
            // Verified, not yet loaded: an in-place write (same inode) lands now.
            let mut bytes = fs::read(path).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0xff;
            fs::write(path, bytes).unwrap();
        })
        .build();
    let report = host.load(&plugin);
    assert_eq!(report.status, host::Status::Failed, "{report:?}");
    assert_eq!(report.reason, Some(host::ReasonCode::LoadFailed));
    let message = report.message.unwrap();
    assert!(
        message.contains("written to while it was being loaded"),
        "{message}"
    );
    assert!(host.plugins().is_empty() && host.registry().list().is_empty());
}

/// Builds `libdep.so` (C, no SONAME) and a plugin whose RUNPATH is `$ORIGIN` that links it.
fn plugin_with_origin_dependency() -> (std::path::PathBuf, std::path::PathBuf) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("origin");
    let _ = fs::remove_dir_all(&tmp);
    let dep = tmp.join("dep");
    fs::create_dir_all(&dep).unwrap();
    fs::write(dep.join("dep.c"), "int dep_value(void) { return 42; }\n").unwrap();
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dep.join("libdep.so"))
        .arg(dep.join("dep.c"))
        .status()
        .expect("a C compiler (cc)");
    assert!(cc.success());

    let krate = tmp.join("origin-plugin");
    fs::create_dir_all(krate.join("src")).unwrap();
    let api = root().join("plugin-api");
    fs::write(
        krate.join("Cargo.toml"),
        format!(
            r#"[workspace]

[package]
name = "origin-plugin"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
plugin-api = {{ path = "{api}" }}

[build-dependencies]
plugin-api = {{ path = "{api}", default-features = false, features = ["build"] }}
"#,
            api = api.display()
        ),
    )
    .unwrap();
    fs::write(
        krate.join("build.rs"),
        format!(
            r#"fn main() {{
    plugin_api::build::record();
    println!("cargo:rustc-link-search=native={}");
    println!("cargo:rustc-link-lib=dylib=dep");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN");
}}
"#,
            dep.display()
        ),
    )
    .unwrap();
    fs::write(
        krate.join("src/lib.rs"),
        r#"use plugin_api::{export_plugin, Initializer, RegisterResult};

extern "C" {
    fn dep_value() -> i32;
}

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    init.add_command("dep", |_: &[&str]| {
        // SAFETY: `dep_value` takes nothing and returns an int (libdep.so, dep.c).
        Ok(unsafe { dep_value() }.to_string())
    })?;
    Ok(())
}
export_plugin!(register);
"#,
    )
    .unwrap();
    fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = fixtures().libs.parent().unwrap();
    cargo(&krate, &["build", "--target-dir", target.to_str().unwrap()]);
    (fixtures().lib("origin-plugin"), dep.join("libdep.so"))
}

#[test]
fn origin_in_runpath_is_the_plugins_own_directory() {
    let (plugin, dep) = plugin_with_origin_dependency();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(&plugin, dir.path().join(plugin.file_name().unwrap())).unwrap();
    fs::copy(&dep, dir.path().join("libdep.so")).unwrap();
    for extra in [&[][..], &["--load-in-place"]] {
        let mut args = vec!["run", "--plugins", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push("dep");
        let out = cli(&args);
        assert_eq!(stdout(&out), "42\n", "{extra:?}: {}", stderr(&out));
    }
    // Without the library beside it, the failure names what is missing.
    fs::remove_file(dir.path().join("libdep.so")).unwrap();
    let scan = scan_json(dir.path(), &[]);
    assert_outcome(
        entry(&scan, plugin.file_name().unwrap().to_str().unwrap()),
        "failed",
        "load-failed",
        &["libdep.so", "$ORIGIN"],
    );
}

/// Runs `plugin-host ARGS` with at most `limit` open file descriptors.
fn cli_with_descriptor_limit(args: &[&str], limit: u64) -> std::process::Output {
    cli_with_rlimit(args, libc::RLIMIT_NOFILE, limit)
}

#[test]
fn no_descriptor_is_kept_per_plugin() {
    // 100 distinct plugins (each a `hello` renamed), under a limit of 64 descriptors: one
    // loads, the others fail on the capability they all claim — none for lack of descriptors.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..100 {
        let path = copy_into(&dir, "hello", &format!("libh{i}.so"));
        rewrite_provenance(&path, |j| j["name"] = format!("h{i}").into());
    }
    let out = cli_with_descriptor_limit(&["scan", dir.path().to_str().unwrap(), "--json"], 64);
    assert!(out.status.success(), "{}", stderr(&out));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plugins = scan["plugins"].as_array().unwrap();
    let count = |reason: &str| plugins.iter().filter(|p| p["reason"] == reason).count();
    assert_eq!(
        plugins.iter().filter(|p| p["status"] == "loaded").count(),
        1
    );
    assert_eq!(count("capability-conflict"), 99, "{scan:#}");

    // And when descriptors do run out, the report says so plainly.
    let out = cli_with_descriptor_limit(&["scan", dir.path().to_str().unwrap(), "--json"], 4);
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("EMFILE"), "{text}");
}

#[test]
fn without_a_private_directory_plugins_still_load() {
    let dir = plugin_dir(&["hello"]);
    let out = cli_with(
        &[
            "run",
            "--plugins",
            dir.path().to_str().unwrap(),
            "hello",
            "Ada",
        ],
        &[("TMPDIR", Path::new("/nonexistent-plugin-host-tmp"))],
        None,
    );
    assert!(stdout(&out).starts_with("hello, Ada!"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot make a private directory under /nonexistent-plugin-host-tmp"),
        "{}",
        stderr(&out)
    );
}
