//! The build-script recorder.
//!
//! A plugin's (or host's) `build.rs` is one line:
//!
//! ```ignore
//! fn main() {
//!     plugin_api::build::record();
//! }
//! ```
//!
//! It gathers the [`Provenance`] of the package being built — `rustc -vV`, the target, the
//! profile, the panic strategy, the enabled features, and the crates that will be linked into
//! the artifact as `cargo tree -e normal,no-proc-macro` reports them for this target — and
//! a content digest of every path dependency among them (so a changed copy of a shared crate
//! at the same version is told apart), and the capabilities the crate declares in its
//! `Cargo.toml` (see [`declared_capabilities`]), and writes the framed blob to `$OUT_DIR/plugin-provenance-{unwind,abort}.bin`, where [`crate::export_plugin!`]
//! and [`crate::provenance_blob!`] pick it up.

use std::collections::BTreeMap;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::provenance::{Dependency, Profile, Provenance, Rustc, SourceKind};

/// The panic strategies a blob is written for: `$OUT_DIR/plugin-provenance-<strategy>.bin`
/// (the framed blob) and `.section` (the section's contents: on ELF, the blob as a note).
pub const PANIC_STRATEGIES: [&str; 2] = ["unwind", "abort"];

/// Records the provenance of the package whose build script calls it.
///
/// # Panics
/// With a message saying what is missing when it is not run from a Cargo build script, when
/// `rustc` or `cargo tree` cannot be run, or when the package links no `plugin-api` /
/// `abi_stable` (it is then neither a plugin nor a host).
pub fn record() {
    if let Err(message) = try_record() {
        panic!("plugin_api::build::record: {message}");
    }
}

/// Like [`record`], returning a message instead of panicking.
pub fn try_record() -> Result<(), String> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let (mut provenance, digested) = collect(&manifest_dir)?;
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    // A build script cannot see the profile's panic strategy (`CARGO_CFG_PANIC` reflects the
    // target's default, not `-C panic`), but the crate being compiled can: one blob per
    // strategy, and `cfg(panic = ..)` in the embedding macro picks the true one.
    let elf = !matches!(
        env::var("CARGO_CFG_TARGET_OS").as_deref(),
        Ok("macos" | "ios" | "tvos" | "watchos" | "visionos" | "windows" | "uefi")
    );
    let big_endian = env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() == Ok("big");
    for strategy in PANIC_STRATEGIES {
        provenance.profile.panic = strategy.to_owned();
        let blob = provenance.encode();
        // What goes into the section: on ELF the blob wrapped as a note, elsewhere the blob.
        let section = if elf {
            crate::frame::elf_note(&blob, big_endian)
        } else {
            blob.clone()
        };
        for (ext, bytes) in [("bin", &blob), ("section", &section)] {
            let path = out_dir.join(format!("plugin-provenance-{strategy}.{ext}"));
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }

    // Re-run when what the record depends on changes; the compiler and profile already
    // trigger a re-run on their own.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(lock) = find_lockfile(&manifest_dir) {
        println!("cargo:rerun-if-changed={}", lock.display());
    }
    // A path dependency's digest must follow its content, though this package's build script
    // does not otherwise re-run when a dependency changes.
    for file in digested {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("${name} is not set; call this from a Cargo build script"))
}

/// The provenance, and the files its digests were computed from.
fn collect(manifest_dir: &Path) -> Result<(Provenance, Vec<PathBuf>), String> {
    let name = var("CARGO_PKG_NAME")?;
    let version = var("CARGO_PKG_VERSION")?;
    let target = var("TARGET")?;
    let features = enabled_features();
    // Read before `cargo tree` runs: it runs without the build's flags.
    let remaps = remap_path_prefixes(&rustflags());
    let mut dependencies = linked_dependencies(manifest_dir, &name, &version, &target, &features)?;
    let mut digests = BTreeMap::new();
    let mut digested = Vec::new();
    for d in &dependencies {
        if let SourceKind::Path(dir) = d.source_kind() {
            let (digest, files) = crate_digest(Path::new(dir))?;
            digests.insert(d.key().to_owned(), digest);
            digested.extend(files);
        }
    }
    if !remaps.is_empty() {
        // Record path crates as rustc writes their paths into the artifact: a build made with
        // `--remap-path-prefix` (the builder's) names no directory of the machine it ran on.
        for d in &mut dependencies {
            if let SourceKind::Path(dir) = d.source_kind() {
                let dir = PathBuf::from(dir);
                if let Some(mapped) = remap(&dir, &remaps) {
                    *d = Dependency::new(d.name(), d.version(), Some(&mapped));
                }
            }
        }
        dependencies.sort();
    }
    let linked = |krate: &str| {
        dependencies
            .iter()
            .find(|d| d.name() == krate)
            .map(|d| d.version().parse::<semver::Version>())
            .ok_or_else(|| format!("{name} does not link `{krate}`; plugins and hosts must"))?
            .map_err(|e| format!("bad version of {krate}: {e}"))
    };
    let capabilities = declared_capabilities(&cargo_metadata(manifest_dir)?, &name, &version)?;
    let provenance = Provenance {
        capabilities,
        plugin_api: linked("plugin-api")?,
        abi_stable: linked("abi_stable")?,
        version: version
            .parse()
            .map_err(|e| format!("bad package version: {e}"))?,
        rustc: rustc_facts()?,
        profile: Profile {
            name: var("PROFILE")?,
            opt_level: var("OPT_LEVEL")?,
            debug_assertions: env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some(),
            // Set per blob by `try_record`.
            panic: String::new(),
        },
        features,
        name,
        target,
        dependencies,
        digests,
    };
    Ok((provenance, digested))
}

/// The build's own rustc flags, as Cargo hands them to build scripts.
fn rustflags() -> Vec<String> {
    match env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) => encoded
            .split('\x1f')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    }
}

/// The `--remap-path-prefix FROM=TO` mappings among rustc flags, in order (both the
/// `--remap-path-prefix=FROM=TO` and the two-argument form).
pub fn remap_path_prefixes(flags: &[String]) -> Vec<(PathBuf, PathBuf)> {
    let mut maps = Vec::new();
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let mapping = match flag.strip_prefix("--remap-path-prefix") {
            Some("") => flags.next().map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some((from, to)) = mapping.and_then(|m| m.rsplit_once('=')) {
            maps.push((PathBuf::from(from), PathBuf::from(to)));
        }
    }
    maps
}

/// `path` as rustc writes it under these mappings: the last mapping whose `FROM` is a
/// leading part of the path (whole components) wins, as in rustc; `None` when none applies.
pub fn remap(path: &Path, maps: &[(PathBuf, PathBuf)]) -> Option<String> {
    maps.iter().rev().find_map(|(from, to)| {
        let rest = path.strip_prefix(from).ok()?;
        let mapped = if rest.as_os_str().is_empty() {
            to.clone()
        } else {
            to.join(rest)
        };
        Some(mapped.to_string_lossy().into_owned())
    })
}

/// The content digest of the crate in `dir`: `sha256:` and the hex SHA-256 over its
/// `Cargo.toml` and every `.rs` file below it, each as its `/`-separated path relative to
/// `dir`, a NUL, its length and its bytes, in path order. `target/`, hidden directories and
/// nested packages (directories with a `Cargo.toml` of their own) are skipped. The digest
/// does not depend on where the crate lies on disk. Also returns the files it read.
pub fn crate_digest(dir: &Path) -> Result<(String, Vec<PathBuf>), String> {
    let mut files = vec![(String::from("Cargo.toml"), dir.join("Cargo.toml"))];
    rust_files(dir, "", &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    for (relative, path) in &files {
        let bytes = read_to_digest(path)?;
        total += bytes.len() as u64;
        if total > MAX_DIGESTED {
            return Err(format!(
                "the crate in {} has more than {MAX_DIGESTED} bytes of sources to digest: it \
                 is not a crate's source (a link to a device or /proc, or a sparse file?)",
                dir.display()
            ));
        }
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((
        format!("sha256:{hex}"),
        files.into_iter().map(|(_, p)| p).collect(),
    ))
}

/// The largest source file [`crate_digest`] reads, and the most bytes of sources in all: far
/// above any crate's (generated bindings run to a few megabytes), far below what a link to
/// `/proc/self/pagemap` or a sparse file would have it read into memory.
const MAX_SOURCE: u64 = 64 << 20;
const MAX_DIGESTED: u64 = 1 << 30;

/// A source file's bytes, at most [`MAX_SOURCE`] of them.
fn read_to_digest(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {} to digest it: {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SOURCE {
        return Err(format!(
            "{} is larger than {MAX_SOURCE} bytes: not a source file to digest (a link to a \
             device or /proc, or a sparse file?)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Collects the `.rs` files below `dir` (whose path relative to the crate is `prefix`).
fn rust_files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        // Follows symlinks to files; a symlinked directory is not entered (no loops).
        let file_type = entry
            .file_type()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if file_type.is_dir() {
            let skip = name.starts_with('.')
                || (prefix.is_empty() && name == "target")
                || path.join("Cargo.toml").is_file();
            if !skip {
                rust_files(&path, &format!("{relative}/"), out)?;
            }
        } else if name.ends_with(".rs") && path.is_file() {
            out.push((relative, path));
        }
    }
    Ok(())
}

/// Features enabled on the package being built.
fn enabled_features() -> Vec<String> {
    let mut features: Vec<String> = match env::var("CARGO_CFG_FEATURE") {
        // Cargo >= 1.85 lists them by their real names.
        Ok(list) => list
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        // Older Cargo: only the upper-cased, `-`→`_` form is available.
        Err(_) => env::vars()
            .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase()))
            .collect(),
    };
    features.sort();
    features
}

fn rustc_facts() -> Result<Rustc, String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run `{rustc} -vV`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{rustc} -vV` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_rustc_vv(&String::from_utf8_lossy(&output.stdout))
}

/// Parses the output of `rustc -vV`.
pub fn parse_rustc_vv(text: &str) -> Result<Rustc, String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
            .map(|v| v.trim().to_owned())
    };
    let release = field("release").ok_or("`rustc -vV` printed no release")?;
    let channel = if release.contains("-nightly") {
        "nightly"
    } else if release.contains("-beta") {
        "beta"
    } else if release.contains("-dev") {
        "dev"
    } else {
        "stable"
    };
    Ok(Rustc {
        commit_hash: field("commit-hash").unwrap_or_else(|| "unknown".into()),
        commit_date: field("commit-date").unwrap_or_else(|| "unknown".into()),
        channel: channel.into(),
        llvm: field("LLVM version"),
        release,
    })
}

/// The crates linked into the artifact, as `cargo tree` reports them for this target and
/// the features of this build.
fn linked_dependencies(
    manifest_dir: &Path,
    name: &str,
    version: &str,
    target: &str,
    features: &[String],
) -> Result<Vec<Dependency>, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let features = features.join(",");
    let mut cmd = Command::new(&cargo);
    cmd.arg("tree")
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .args(["--package", &format!("{name}@{version}")])
        .args(["--target", target])
        .args(["--edges", "normal,no-proc-macro"])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(["--no-default-features", "--features", &features])
        .arg("--locked")
        // Run with the user's view of the world, not this build script's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run `{cargo} tree`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo tree` failed for {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut deps = parse_cargo_tree(&String::from_utf8_lossy(&output.stdout))?;
    deps.retain(|d| !(d.name() == name && d.version() == version));
    Ok(deps)
}

/// `cargo metadata --no-deps` of the package's manifest (nothing is resolved or fetched).
fn cargo_metadata(manifest_dir: &Path) -> Result<String, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|e| format!("cannot run `{cargo} metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| "`cargo metadata` printed no UTF-8".to_owned())
}

/// The capabilities package `name` `version` declares, from `cargo metadata` JSON: its
/// manifest's
///
/// ```toml
/// [package.metadata.plugin-host]
/// capabilities = { command = ["hello"], transform = ["redact"] }
/// ```
///
/// (or the same as a `[package.metadata.plugin-host.capabilities]` table): by kind, each
/// list sorted and de-duplicated. `None` when the manifest has no `capabilities` there (the
/// plugin declares nothing and may register anything); `Err` when it is not a table of
/// lists of strings.
pub fn declared_capabilities(
    metadata: &str,
    name: &str,
    version: &str,
) -> Result<Option<BTreeMap<String, Vec<String>>>, String> {
    let metadata: serde_json::Value = serde_json::from_str(metadata)
        .map_err(|e| format!("`cargo metadata` printed no JSON: {e}"))?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages
                .iter()
                .find(|p| p["name"] == name && p["version"] == version)
        })
        .ok_or_else(|| format!("`cargo metadata` does not list {name} {version}"))?;
    let Some(declared) = package["metadata"]
        .get("plugin-host")
        .and_then(|table| table.get("capabilities"))
    else {
        return Ok(None);
    };
    let wrong = || {
        format!(
            "[package.metadata.plugin-host] capabilities of {name} must be a table of kinds, \
             each a list of capability names, e.g. capabilities = {{ command = [\"hello\"] }}"
        )
    };
    let table = declared.as_object().ok_or_else(wrong)?;
    let mut capabilities = BTreeMap::new();
    for (kind, names) in table {
        let mut names = names
            .as_array()
            .ok_or_else(wrong)?
            .iter()
            .map(|n| n.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        names.dedup();
        capabilities.insert(kind.clone(), names);
    }
    Ok(Some(capabilities))
}

/// Parses `cargo tree --prefix none --format {p}` output into a sorted, de-duplicated list.
pub fn parse_cargo_tree(text: &str) -> Result<Vec<Dependency>, String> {
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(" (*)").unwrap_or(line);
        let (name, rest) = line
            .split_once(' ')
            .ok_or_else(|| format!("unexpected `cargo tree` line: {line:?}"))?;
        let (version, source) = match rest.split_once(' ') {
            Some((v, s)) => (
                v,
                Some(s.trim_start_matches('(').trim_end_matches(')').to_owned()),
            ),
            None => (rest, None),
        };
        let version = version
            .strip_prefix('v')
            .ok_or_else(|| format!("unexpected `cargo tree` line: {line:?}"))?;
        deps.push(Dependency::new(name, version, source.as_deref()));
    }
    deps.sort();
    deps.dedup();
    Ok(deps)
}

fn find_lockfile(manifest_dir: &Path) -> Option<PathBuf> {
    manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rustc() {
        let r = parse_rustc_vv(
            "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 59807616e1fa2540724bfbac14d7976d7e4a3860\ncommit-date: 2026-04-14\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 22.1.2\n",
        )
        .unwrap();
        assert_eq!(r.release, "1.95.0");
        assert_eq!(r.channel, "stable");
        assert_eq!(r.llvm.as_deref(), Some("22.1.2"));
        assert_eq!(r.short(), "1.95.0 (59807616e)");
        let n = parse_rustc_vv("release: 1.97.0-nightly\n").unwrap();
        assert_eq!(
            (n.channel.as_str(), n.commit_hash.as_str()),
            ("nightly", "unknown")
        );
    }

    #[test]
    fn digest_follows_content_not_location() {
        let write = |root: &Path, file: &str, text: &str| {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let base = env::temp_dir().join(format!("plugin-api-digest-{}", std::process::id()));
        let (a, b) = (base.join("one/kinds"), base.join("elsewhere/deeper/kinds"));
        for dir in [&a, &b] {
            write(dir, "Cargo.toml", "[package]\nname = \"kinds\"\n");
            write(dir, "src/lib.rs", "pub mod shape;\n");
            write(dir, "src/shape.rs", "pub struct Shape(pub u32);\n");
        }
        // Not part of the crate's content: build output, hidden dirs, nested packages,
        // files that are not Rust sources.
        write(&b, "target/debug/junk.rs", "junk");
        write(&b, ".git/hook.rs", "junk");
        write(&b, "nested/Cargo.toml", "[package]\nname = \"nested\"\n");
        write(&b, "nested/src/lib.rs", "junk");
        write(&b, "README.md", "junk");
        let (da, files) = crate_digest(&a).unwrap();
        assert!(da.starts_with("sha256:") && da.len() == 7 + 64, "{da}");
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(crate_digest(&b).unwrap().0, da, "same content elsewhere");

        write(&b, "src/shape.rs", "pub struct Shape(pub u64);\n");
        assert_ne!(crate_digest(&b).unwrap().0, da, "a changed .rs file");
        write(&b, "src/shape.rs", "pub struct Shape(pub u32);\n");
        write(&b, "src/extra.rs", "");
        assert_ne!(crate_digest(&b).unwrap().0, da, "an added .rs file");
        std::fs::remove_file(b.join("src/extra.rs")).unwrap();
        std::fs::rename(b.join("src/shape.rs"), b.join("src/form.rs")).unwrap();
        assert_ne!(crate_digest(&b).unwrap().0, da, "a renamed .rs file");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_source_file_is_read_within_a_bound_whatever_it_claims() {
        let base = env::temp_dir().join(format!("plugin-api-digest-big-{}", std::process::id()));
        std::fs::create_dir_all(base.join("src")).unwrap();
        std::fs::write(base.join("Cargo.toml"), "[package]\nname = \"big\"\n").unwrap();
        std::fs::write(base.join("src/lib.rs"), "").unwrap();
        // A sparse source file of 100 MiB (or a link to /proc/self/pagemap, endless): it was
        // read whole into memory.
        let big = std::fs::File::create(base.join("src/big.rs")).unwrap();
        big.set_len(100 << 20).unwrap();
        let error = crate_digest(&base).unwrap_err();
        assert!(
            error.contains("big.rs is larger than 67108864 bytes"),
            "{error}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn remaps_path_sources_as_rustc_does() {
        let flags: Vec<String> = [
            "-Cdebuginfo=1",
            "--remap-path-prefix=/home/ada/shout=/build/crate",
            "--remap-path-prefix",
            "/home/ada/host=/opt/crates",
            "--remap-path-prefix=/home/ada/host/plugin-api=/opt/crates/api",
        ]
        .map(String::from)
        .to_vec();
        let maps = remap_path_prefixes(&flags);
        assert_eq!(maps.len(), 3);
        let at = |p: &str| remap(Path::new(p), &maps);
        // The last mapping that matches wins.
        assert_eq!(
            at("/home/ada/host/plugin-api").as_deref(),
            Some("/opt/crates/api")
        );
        assert_eq!(
            at("/home/ada/host/kinds").as_deref(),
            Some("/opt/crates/kinds")
        );
        assert_eq!(at("/home/ada/shout").as_deref(), Some("/build/crate"));
        // Whole components only, and no mapping: unchanged.
        assert_eq!(at("/home/ada/hostile"), None);
        assert!(remap_path_prefixes(&["-Copt-level=3".to_owned()]).is_empty());
    }

    #[test]
    fn reads_declared_capabilities() {
        let metadata = |meta: &str| {
            format!(
                r#"{{"packages":[{{"name":"other","version":"0.1.0","metadata":{{"plugin-host":{{"capabilities":{{"command":["x"]}}}}}}}},{{"name":"hello","version":"0.1.0","metadata":{meta}}}],"version":1}}"#
            )
        };
        let declared = declared_capabilities(
            &metadata(r#"{"plugin-host":{"capabilities":{"command":["hi","hello","hi"],"transform":[]}}}"#),
            "hello",
            "0.1.0",
        )
        .unwrap()
        .unwrap();
        assert_eq!(declared["command"], ["hello", "hi"]);
        assert!(declared["transform"].is_empty());
        for absent in ["null", "{}", r#"{"plugin-host":{}}"#, r#"{"docs":1}"#] {
            assert_eq!(
                declared_capabilities(&metadata(absent), "hello", "0.1.0"),
                Ok(None),
                "{absent}"
            );
        }
        for bad in [
            r#"{"plugin-host":{"capabilities":["hello"]}}"#,
            r#"{"plugin-host":{"capabilities":{"command":"hello"}}}"#,
            r#"{"plugin-host":{"capabilities":{"command":[1]}}}"#,
        ] {
            let err = declared_capabilities(&metadata(bad), "hello", "0.1.0").unwrap_err();
            assert!(err.contains("must be a table of kinds"), "{err}");
        }
        assert!(declared_capabilities(&metadata("null"), "nope", "0.1.0").is_err());
    }

    #[test]
    fn parses_cargo_tree() {
        let deps = parse_cargo_tree(
            "hello v0.1.0 (/w/plugins/hello)\nlog v0.4.35\nplugin-api v0.1.0 (/w/plugin-api)\nlog v0.4.35 (*)\nfoo v1.0.0 (https://x/foo#abc)\n",
        )
        .unwrap();
        let names: Vec<_> = deps.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            names,
            [
                "foo 1.0.0 (https://x/foo#abc)",
                "hello 0.1.0 (/w/plugins/hello)",
                "log 0.4.35",
                "plugin-api 0.1.0 (/w/plugin-api)"
            ]
        );
        assert!(parse_cargo_tree("garbage\n").is_err());
    }
}
