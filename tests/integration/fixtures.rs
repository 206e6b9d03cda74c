//! Builds every fixture plugin once per test run, from source, with the toolchain running the
//! tests: the example plugins, the fixture workspace in `tests/fixtures`, and two generated
//! workspaces that need their own settings (a `plugin-api` 2.0.0 copy; `panic = "abort"`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the fixture libraries are.
pub struct Fixtures {
    /// The target directory's `debug` folder: `lib<name>.so` for every fixture.
    pub libs: PathBuf,
}

impl Fixtures {
    /// The built library of crate `name` (`hello`, `bad-register`, …).
    pub fn lib(&self, name: &str) -> PathBuf {
        let file = format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            name.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        );
        let path = self.libs.join(file);
        assert!(path.is_file(), "fixture {} was not built", path.display());
        path
    }
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The target directory the fixtures are built into; scratch plugins built into it reuse the
/// fixtures' compiled dependencies.
pub fn fixtures_target() -> PathBuf {
    tmp().join("fixtures-target")
}

/// Builds the fixtures on first use; later calls return at once.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(build_all)
}

fn build_all() -> Fixtures {
    let target = fixtures_target();
    let target_arg = target.to_str().expect("UTF-8 target dir");

    // The example plugins, from the main workspace (same lockfile as the host).
    cargo(
        root(),
        &[
            "build",
            "-p",
            "hello",
            "-p",
            "redact",
            "-p",
            "wc",
            "--target-dir",
            target_arg,
        ],
    );

    // The fixture workspace, pinned to the host's dependency versions.
    let fixtures = root().join("tests/fixtures");
    fs::copy(root().join("Cargo.lock"), fixtures.join("Cargo.lock")).expect("copy Cargo.lock");
    cargo(&fixtures, &["build", "--target-dir", target_arg]);

    build_api_two(target_arg);
    build_abortive(target_arg);
    Fixtures {
        libs: target.join("debug"),
    }
}

/// A plugin built against a copy of `plugin-api` whose version is 2.0.0.
fn build_api_two(target: &str) {
    let ws = tmp().join("ws-api-two");
    scratch_workspace(&ws, "api-two", Some("2.0.0"));
    cargo(&ws, &["build", "-p", "api-two", "--target-dir", target]);
}

/// A fresh workspace at `ws` (emptied first) with the host's Cargo.lock and a plugin crate
/// `name` registering one command (`{name}-command`). With `api_copy`, the plugin depends on a
/// copy of `plugin-api` with that version, in a workspace of its own at `{ws}.api` (so the
/// plugin can be pointed back at this checkout's `plugin-api` without two `plugin-api 0.1.0`
/// in one lockfile; the copy keeps the manifest's text otherwise, so an unchanged copy has the
/// content digest of the original); without, on this checkout's `plugin-api`.
pub fn scratch_workspace(ws: &Path, name: &str, api_copy: Option<&str>) {
    let _ = fs::remove_dir_all(ws);
    let api_path = match api_copy {
        Some(version) => {
            let api_ws = ws.with_extension("api");
            let _ = fs::remove_dir_all(&api_ws);
            copy_dir(
                &root().join("plugin-api/src"),
                &api_ws.join("plugin-api/src"),
            );
            let manifest = fs::read_to_string(root().join("plugin-api/Cargo.toml")).unwrap();
            let manifest = manifest.replacen(
                "version = \"0.1.0\"",
                &format!("version = \"{version}\""),
                1,
            );
            assert!(
                manifest.contains(&format!("version = \"{version}\"")),
                "plugin-api manifest changed shape"
            );
            write(&api_ws.join("plugin-api/Cargo.toml"), &manifest);
            // The copy inherits the workspace lints, as the original does.
            let workspace = fs::read_to_string(root().join("Cargo.toml")).unwrap();
            let lints = workspace
                .split_once("[workspace.lints.rust]")
                .and_then(|(_, rest)| rest.split_once("\n[package]"))
                .map(|(lints, _)| lints)
                .expect("the root manifest has [workspace.lints.rust] before [package]");
            write(
                &api_ws.join("Cargo.toml"),
                &format!(
                    "[workspace]\nmembers = [\"plugin-api\"]\nresolver = \"2\"\n\n[workspace.lints.rust]{lints}"
                ),
            );
            api_ws.join("plugin-api")
        }
        None => root().join("plugin-api"),
    };
    write(
        &ws.join("Cargo.toml"),
        &format!("[workspace]\nmembers = [\"{name}\"]\nresolver = \"2\"\n"),
    );
    plugin_crate(
        &ws.join(name),
        name,
        api_path.to_str().unwrap(),
        &format!("{name}-command"),
    );
    fs::copy(root().join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
}

/// A plugin built with `panic = "abort"`.
fn build_abortive(target: &str) {
    let ws = tmp().join("ws-abortive");
    let _ = fs::remove_dir_all(&ws);
    write(
        &ws.join("Cargo.toml"),
        "[workspace]\nmembers = [\"abortive\"]\nresolver = \"2\"\n\n[profile.dev]\npanic = \"abort\"\n",
    );
    let api = root().join("plugin-api");
    plugin_crate(
        &ws.join("abortive"),
        "abortive",
        api.to_str().unwrap(),
        "abortive-command",
    );
    fs::copy(root().join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    cargo(&ws, &["build", "--target-dir", target]);
}

/// Writes a minimal plugin crate registering one command.
pub fn plugin_crate(dir: &Path, name: &str, api_path: &str, command: &str) {
    write(
        &dir.join("Cargo.toml"),
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
plugin-api = {{ path = "{api_path}" }}

[build-dependencies]
plugin-api = {{ path = "{api_path}", default-features = false, features = ["build"] }}
"#
        ),
    );
    write(
        &dir.join("build.rs"),
        "fn main() {\n    plugin_api::build::record();\n}\n",
    );
    write(
        &dir.join("src/lib.rs"),
        &format!(
            r#"use plugin_api::{{export_plugin, Initializer, RegisterResult}};

fn register(init: &mut Initializer<'_>) -> RegisterResult {{
    init.add_command("{command}", |_: &[&str]| Ok("{name}".to_string()))?;
    Ok(())
}}
export_plugin!(register);
"#
        ),
    );
}

/// Runs `cargo ARGS` in `dir` (the cargo running the tests) and returns its stdout; fails the
/// test with cargo's stderr if it fails.
pub fn cargo(dir: &Path, args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = run_cargo(Command::new(cargo), dir, args);
    String::from_utf8(output.stdout).expect("cargo prints UTF-8")
}

/// Runs `cargo` (the program `command` names) with `args` in `dir`, without the test run's
/// target directory; fails the test with cargo's stderr if it fails.
fn run_cargo(mut command: Command, dir: &Path, args: &[&str]) -> std::process::Output {
    let output = command
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "`cargo {}` in {} failed:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a command line a message suggests (`cargo +1.95.0 build`, `cargo update … && cargo
/// update …`) in `dir`, as a user's shell would: `cargo` is rustup's proxy from `PATH`, so
/// `+TOOLCHAIN` works, with none of the toolchain choices of the cargo running the tests.
/// `extra` is appended to every cargo invocation. Fails the test if any part fails.
pub fn run_suggested(dir: &Path, command: &str, extra: &[&str]) {
    for part in command.split(" && ") {
        let mut words = part.split_whitespace();
        assert_eq!(
            words.next(),
            Some("cargo"),
            "not a cargo command: {command}"
        );
        let args: Vec<&str> = words.chain(extra.iter().copied()).collect();
        let mut proxy = Command::new("cargo");
        proxy
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("CARGO");
        run_cargo(proxy, dir, &args);
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}
