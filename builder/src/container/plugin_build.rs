//! Building one plugin crate: in the builder image with the network off, or on this machine
//! with the pinned toolchain; either way checked by the host's CLI under `--policy strict`
//! and written to the output directory under its full name, or not at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use host::HostIdentity;

use super::context::{host_crates, image_tag, HostCrate, IMAGE_ROOT};
use super::engine::Engine;
use super::error::{tail, ContainerError};
use super::files::copy_regular;
use super::glibc;
use super::toolchain;
use crate::copy::copy_tree;

/// Where the plugin crate is inside the image (and what its path is remapped to elsewhere).
pub const CRATE_DIR: &str = "/build/crate";
/// The target directory inside the image.
pub const TARGET_DIR: &str = "/build/target";

/// One plugin build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The plugin crate's directory.
    pub crate_dir: PathBuf,
    /// Where the built file goes.
    pub out_dir: PathBuf,
    /// The `plugin-host` CLI that checks the result (on this machine, for `--engine none`).
    pub checker: PathBuf,
}

/// A plugin that was built, checked and written.
#[derive(Debug, Clone)]
pub struct Built {
    /// The file in the output directory.
    pub path: PathBuf,
    /// Its hex SHA-256.
    pub sha256: String,
}

/// The plugin crate as `cargo metadata` describes it.
struct PluginCrate {
    name: String,
    version: String,
    lib_name: String,
}

/// The output's file name: `<plugin>-<version>+<host>-<host-version>-<target>.<ext>`.
pub fn output_name(host: &HostIdentity, plugin: &str, version: &str) -> String {
    let ext = std::env::consts::DLL_EXTENSION;
    format!(
        "{plugin}-{version}+{}-{}-{}.{ext}",
        host.name, host.version, host.provenance.target
    )
}

/// Builds the plugin crate in `engine`'s builder image for `host` (network off), or on this
/// machine when `engine` is `None`.
pub fn build_plugin(
    host: &HostIdentity,
    engine: Option<&Engine>,
    request: &BuildRequest,
) -> Result<Built, ContainerError> {
    let plugin = inspect(&request.crate_dir)?;
    let crates = host_crates(host);
    if let Some(engine) = engine {
        // Before anything is copied: is there an image to build in?
        let tag = image_tag(host);
        if !engine.has_image(&tag)? {
            return Err(ContainerError::NoImage {
                engine: engine.name().to_owned(),
                image: tag,
            });
        }
    }
    fs::create_dir_all(&request.out_dir).map_err(ContainerError::io(&request.out_dir))?;
    let stage = tempfile::tempdir().map_err(ContainerError::io(std::env::temp_dir()))?;
    let staged = stage.path().join("crate");
    copy_tree(&request.crate_dir, &staged, &|rel, is_dir| {
        is_dir && (rel == Path::new("target") || rel == Path::new(".git"))
    })?;
    rewrite_paths(&request.crate_dir, &staged, &crates, engine.is_some())?;
    let debug = host.provenance.profile.name != "release";
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        plugin.lib_name,
        std::env::consts::DLL_SUFFIX
    );
    let built = match engine {
        Some(engine) => in_image(engine, host, &plugin, stage.path(), debug, &file)?,
        None => on_machine(host, &plugin, stage.path(), &crates, debug, &file)?,
    };

    // Nothing half-written in the output directory: a hidden temporary file beside the final
    // name (a regular file copied from the build's, never through a link), checked, then
    // renamed over the final name.
    let name = output_name(host, &plugin.name, &plugin.version);
    let target = request.out_dir.join(&name);
    let partial = request
        .out_dir
        .join(format!(".partial-{}-{name}", std::process::id()));
    let (from_dir, from_name) = match (built.parent(), built.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(file)) => (dir, file),
        _ => {
            return Err(ContainerError::Io {
                path: built.clone(),
                source: std::io::Error::other("not a file name"),
            })
        }
    };
    let sha256 = copy_regular(from_dir, from_name, &partial)?;
    let checked = check_written(&plugin, &partial, &request.checker)
        .and_then(|()| fs::rename(&partial, &target).map_err(ContainerError::io(&target)));
    if let Err(e) = checked {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    Ok(Built {
        sha256,
        path: target,
    })
}

/// The checks of the very bytes written to the output directory (`file`): the C library it
/// needs is not newer than the host's, and the host's CLI accepts it under `--policy strict`.
fn check_written(plugin: &PluginCrate, file: &Path, checker: &Path) -> Result<(), ContainerError> {
    if let (Some(needs), Some(floor)) = (glibc::glibc_needed(file)?, glibc::glibc_needed(checker)?)
    {
        if needs > floor {
            return Err(ContainerError::GlibcTooNew {
                name: plugin.name.clone(),
                needs: glibc::show(needs),
                floor: glibc::show(floor),
            });
        }
    }
    let check = Command::new(checker)
        .args(["check", "--policy", "strict"])
        .arg(file)
        .env("PLUGIN_HOST_LOG", "warn")
        .output()
        .map_err(|source| ContainerError::Spawn {
            program: checker.display().to_string(),
            source,
        })?;
    if !check.status.success() {
        return Err(ContainerError::Refused {
            name: plugin.name.clone(),
            report: tail(&[check.stdout.as_slice(), &check.stderr].concat(), 30),
        });
    }
    Ok(())
}

/// Reads the crate's manifest with `cargo metadata` and checks it is a standalone plugin
/// crate: a `cdylib` that records its provenance.
fn inspect(dir: &Path) -> Result<PluginCrate, ContainerError> {
    let not_a_crate = |detail: String| ContainerError::NotACrate {
        dir: dir.to_path_buf(),
        detail,
    };
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .map_err(|e| not_a_crate(format!("no Cargo.toml ({e})")))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        // Read on this machine, before the build is confined: from `/`, so rustup and cargo
        // read no toolchain file or `.cargo/config.toml` of the crate (nothing it names runs
        // here), and with no rustc wrapper.
        .current_dir("/")
        .env("RUSTC_WRAPPER", "")
        .env("RUSTC_WORKSPACE_WRAPPER", "")
        .env("CARGO_BUILD_RUSTC_WRAPPER", "")
        .env("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER", "")
        .output()
        .map_err(|source| ContainerError::Spawn {
            program: cargo,
            source,
        })?;
    if !out.status.success() {
        return Err(not_a_crate(tail(&out.stderr, 5)));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| not_a_crate(e.to_string()))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .ok_or_else(|| not_a_crate("cargo metadata does not list it".into()))?;
    let root = PathBuf::from(meta["workspace_root"].as_str().unwrap_or_default());
    if Some(root.as_path()) != manifest.parent() {
        return Err(ContainerError::NotStandalone {
            dir: dir.to_path_buf(),
            root,
        });
    }
    let targets = package["targets"].as_array().cloned().unwrap_or_default();
    let has_kind = |t: &serde_json::Value, kind: &str| {
        t["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == kind))
    };
    let lib = targets
        .iter()
        .find(|t| has_kind(t, "cdylib"))
        .ok_or_else(|| ContainerError::NotACdylib {
            dir: dir.to_path_buf(),
        })?;
    let no_recorder = |missing: &str| ContainerError::NoRecorder {
        dir: dir.to_path_buf(),
        missing: missing.to_owned(),
    };
    if !targets.iter().any(|t| has_kind(t, "custom-build")) {
        return Err(no_recorder("it has no build script"));
    }
    let records = package["dependencies"].as_array().is_some_and(|deps| {
        deps.iter().any(|d| {
            d["name"] == "plugin-api"
                && d["kind"] == "build"
                && d["features"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "build"))
        })
    });
    if !records {
        return Err(no_recorder(
            "no build-dependency on plugin-api with the `build` feature",
        ));
    }
    Ok(PluginCrate {
        name: package["name"].as_str().unwrap_or_default().to_owned(),
        version: package["version"].as_str().unwrap_or_default().to_owned(),
        lib_name: lib["name"].as_str().unwrap_or_default().replace('-', "_"),
    })
}

/// Points the staged manifest's path dependencies where the build can reach them: in the
/// image, the host's path crates at their place in the image (any other path is an error);
/// on this machine, the same directories as absolute paths (the stage is elsewhere).
fn rewrite_paths(
    original: &Path,
    staged: &Path,
    crates: &[HostCrate],
    in_image: bool,
) -> Result<(), ContainerError> {
    let manifest = staged.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).map_err(ContainerError::io(&manifest))?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = find_path_key(rest) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        // `after` starts at the opening quote of the path value.
        let quote = &after[..1];
        // An unterminated string (say a comment `# path = "` at the end): no value to
        // rewrite; cargo reads the manifest and says what is wrong with it.
        let Some(end) = after[1..].find(quote).map(|e| e + 1) else {
            rest = after;
            break;
        };
        let value = &after[1..end];
        let resolved = original.join(value);
        let resolved = resolved.canonicalize().unwrap_or(resolved);
        let host_crate = crates
            .iter()
            .find(|c| c.dir.canonicalize().is_ok_and(|d| d == resolved));
        let replacement = match (in_image, host_crate) {
            (true, Some(c)) => c.image_dir(),
            (true, None) => {
                return Err(ContainerError::UnreachablePath {
                    dir: original.to_path_buf(),
                    path: value.to_owned(),
                    known: crates
                        .iter()
                        .map(|c| format!("{} at {}", c.name, c.dir.display()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
            (false, _) => resolved.display().to_string(),
        };
        out.push_str(&format!("{replacement:?}"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    fs::write(&manifest, out).map_err(ContainerError::io(&manifest))
}

/// The offset of the quoted value of the next `path = "…"` key in a manifest.
fn find_path_key(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("path") {
        let at = from + i;
        let before_ok =
            at == 0 || matches!(text.as_bytes()[at - 1], b' ' | b'{' | b',' | b'\n' | b'\t');
        let after = text[at + 4..].trim_start();
        if before_ok {
            if let Some(value) = after.strip_prefix('=') {
                let value = value.trim_start();
                if value.starts_with('"') || value.starts_with('\'') {
                    return Some(text.len() - value.len());
                }
            }
        }
        from = at + 4;
    }
    None
}

fn in_image(
    engine: &Engine,
    host: &HostIdentity,
    plugin: &PluginCrate,
    stage: &Path,
    debug: bool,
    file: &str,
) -> Result<PathBuf, ContainerError> {
    let tag = image_tag(host);
    let out_dir = stage.join("out");
    fs::create_dir_all(&out_dir).map_err(ContainerError::io(&out_dir))?;
    let profile = if debug { "debug" } else { "release" };
    let release = if debug { "" } else { " --release" };
    // Exit 70: the build failed; 71: the host refused the result.
    let script = format!(
        "cargo build --offline --lib{release} >/build/out/build.log 2>&1 || {{ cat /build/out/build.log >&2; exit 70; }}; \
         plugin-host check --policy strict {TARGET_DIR}/{profile}/{file} >&2 || exit 71; \
         cp {TARGET_DIR}/{profile}/{file} /build/out/{file}"
    );
    // The crate's build script and proc macros run in there: no network, no capability (a
    // root in the container that cannot chown, make device nodes or bypass permissions
    // leaves nothing in the mounted directories that the user cannot remove), and nothing
    // it runs gains privileges (no setuid program).
    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--network=none".into(),
        "--cap-drop=ALL".into(),
        "--security-opt=no-new-privileges".into(),
    ];
    args.extend(engine.limits());
    args.extend([
        "-e".into(),
        "PLUGIN_HOST_LOG=warn".into(),
        "-v".into(),
        format!("{}:{CRATE_DIR}", stage.join("crate").display()),
        "-v".into(),
        format!("{}:/build/out", out_dir.display()),
        "-w".into(),
        CRATE_DIR.into(),
        tag.clone(),
        "sh".into(),
        "-c".into(),
        script,
    ]);
    // The crate's own code runs in there: what it prints is kept within bounds.
    let out = engine.output_bounded(engine.command().args(&args))?;
    match out.status.code() {
        Some(0) => Ok(out_dir.join(file)),
        Some(70) => Err(ContainerError::BuildFailed {
            name: plugin.name.clone(),
            where_: format!("in the image {tag}"),
            log: tail(&out.stderr, 30),
            advice: image_advice(host, &stage.join("crate")),
        }),
        Some(71) => Err(ContainerError::Refused {
            name: plugin.name.clone(),
            report: tail(&out.stderr, 30),
        }),
        _ => Err(ContainerError::CommandFailed {
            command: format!("{} run … {tag}", engine.name()),
            status: out.status.to_string(),
            detail: tail(&out.stderr, 20),
        }),
    }
}

/// What to do about a build that failed in the image: the `cargo update` commands that move
/// each crate of the lock the image does not hold to the host's version, when there are any.
fn image_advice(host: &HostIdentity, staged: &Path) -> String {
    let general = "fix the crate so `cargo build --offline` succeeds with only the host's crates (the image has no network and holds only the crates of the host's Cargo.lock, at its versions)";
    let Some(host_lock) = super::context::host_lockfile(host) else {
        return general.to_owned();
    };
    let gaps = match crate::lockfile::gaps_between(&host_lock, &staged.join("Cargo.lock")) {
        Ok(gaps) if !gaps.is_empty() => gaps,
        _ => return general.to_owned(),
    };
    let mut advice = format!(
        "the image holds only the crates of the host's {}, at its versions, and the crate's Cargo.lock names others",
        host_lock.display()
    );
    let commands: Vec<&str> = gaps.iter().filter_map(|g| g.command.as_deref()).collect();
    if !commands.is_empty() {
        advice.push_str("; run in the crate's directory (or `plugin-host preflight --fix` there):");
        for command in commands {
            advice.push_str(&format!("\n  {command}"));
        }
    }
    let unmovable: Vec<String> = gaps
        .iter()
        .filter(|g| g.command.is_none())
        .map(ToString::to_string)
        .collect();
    if !unmovable.is_empty() {
        advice.push_str("\nand change the crate's requirements for:");
        for gap in unmovable {
            advice.push_str(&format!("\n  {gap}"));
        }
    }
    advice
}

/// The `--remap-path-prefix` flags that make a build on this machine name the paths it
/// would have in the image: the crate, the target directory, the host's path crates and
/// cargo's registry sources.
fn remaps(stage: &Path, crates: &[HostCrate]) -> Vec<String> {
    let mut maps = vec![
        (stage.join("crate"), PathBuf::from(CRATE_DIR)),
        (stage.join("target"), PathBuf::from(TARGET_DIR)),
    ];
    for c in crates {
        maps.push((c.dir.clone(), PathBuf::from(c.image_dir())));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(src) = cargo_home.map(|h| h.join("registry/src")) {
        for index in fs::read_dir(&src).into_iter().flatten().flatten() {
            maps.push((index.path(), PathBuf::from(format!("{IMAGE_ROOT}/vendor"))));
        }
    }
    maps.into_iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={}", from.display(), to.display()))
        .collect()
}

fn on_machine(
    host: &HostIdentity,
    plugin: &PluginCrate,
    stage: &Path,
    crates: &[HostCrate],
    debug: bool,
    file: &str,
) -> Result<PathBuf, ContainerError> {
    let toolchain = toolchain::find(&host.provenance.rustc)?;
    // `cargo +TOOLCHAIN`, without needing rustup's proxy on PATH: that toolchain's own cargo
    // and rustc.
    let mut cmd = Command::new(toolchain.sysroot.join("bin/cargo"));
    cmd.args(["build", "--lib"])
        .env("RUSTC", toolchain.sysroot.join("bin/rustc"))
        .arg("--manifest-path")
        .arg(stage.join("crate/Cargo.toml"))
        .arg("--target-dir")
        .arg(stage.join("target"))
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            remaps(stage, crates).join("\x1f"),
        )
        .env("CARGO_INCREMENTAL", "0")
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    if !debug {
        cmd.arg("--release");
    }
    let out = super::engine::bounded_output(&mut cmd).map_err(|source| ContainerError::Spawn {
        program: format!("cargo +{}", toolchain.name),
        source,
    })?;
    if !out.status.success() {
        return Err(ContainerError::BuildFailed {
            name: plugin.name.clone(),
            where_: format!("on this machine with {}", toolchain.name),
            log: tail(&out.stderr, 30),
            advice: "fix the crate so `cargo build` succeeds with the host's toolchain".into(),
        });
    }
    Ok(stage
        .join("target")
        .join(if debug { "debug" } else { "release" })
        .join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_path_values() {
        let text =
            "[dependencies]\nplugin-api = { path = \"../api\" }\nxpath = 1\nb = {path='x'}\n";
        let first = find_path_key(text).unwrap();
        assert!(text[first..].starts_with("\"../api\""));
        let rest = &text[first + 8..];
        let second = find_path_key(rest).unwrap();
        assert!(rest[second..].starts_with("'x'"));
        assert_eq!(find_path_key("xpath = \"no\""), None);
    }

    #[test]
    fn a_manifest_ending_inside_a_path_value_is_left_to_cargo_not_a_panic() {
        let (original, staged) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for text in [
            "[package]\nname = \"p\"\n# path = \"",
            "[package]\nname = \"p\"\n# path = '",
            "[dependencies]\nx = { path = \"../x\" }\n# path = \"caf\u{e9}",
        ] {
            let manifest = staged.path().join("Cargo.toml");
            fs::write(&manifest, text).unwrap();
            rewrite_paths(original.path(), staged.path(), &[], false).unwrap();
            let rewritten = fs::read_to_string(&manifest).unwrap();
            // What comes after the last value is kept as it was.
            assert!(
                rewritten.ends_with(text.rsplit_once('#').unwrap().1),
                "{rewritten}"
            );
        }
    }
}
