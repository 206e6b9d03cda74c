//! The builder image's build context, derived from the host's provenance: a Containerfile,
//! the host's toolchain, its path crates, a vendored set of the crates it links and the
//! `plugin-host` CLI that checks every build before it is handed out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use host::HostIdentity;
use plugin_api::provenance::SourceKind;
use sha2::{Digest, Sha256};

use super::error::{tail, ContainerError};
use super::files::{hex, make_executable, sha256_file, write};
use super::glibc;
use super::toolchain::{self, Toolchain};
use crate::copy::copy_tree;

/// Where the builder's files live inside the image.
pub const IMAGE_ROOT: &str = "/opt/plugin-builder";
/// The label holding the digest of what went into an image (see [`context_key`]).
pub const CONTEXT_LABEL: &str = "org.plugin-host.builder.context";
/// The base image the Containerfile starts from, unless told otherwise.
pub const DEFAULT_BASE: &str = "localhost/plugin-builder-base:bookworm";
/// Bump when the context's layout changes: images of older contexts are then rebuilt.
const CONTEXT_FORMAT: &str = "plugin-builder-context-1";

/// What a context is made from, beside the host's provenance.
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// The `plugin-host` CLI to put in the image (the running one: it carries the host's
    /// provenance).
    pub checker: PathBuf,
    /// The host's `Cargo.lock`; found above the host's first path crate when `None`.
    pub lockfile: Option<PathBuf>,
    /// The local base image (`FROM`).
    pub base_image: String,
}

/// A written context.
#[derive(Debug, Clone)]
pub struct Context {
    /// Its directory.
    pub dir: PathBuf,
    /// The digest of its inputs, as [`context_key`] computes it.
    pub key: String,
    /// The toolchain copied into it.
    pub toolchain: Toolchain,
}

/// A path crate the host links: name, version, and the directory its provenance records.
#[derive(Debug, Clone)]
pub struct HostCrate {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Directory on this machine.
    pub dir: PathBuf,
    /// Content digest, when recorded.
    pub digest: Option<String>,
}

impl HostCrate {
    /// Where the image holds it.
    pub fn image_dir(&self) -> String {
        format!("{IMAGE_ROOT}/crates/{}", self.name)
    }
}

/// The tag of the builder image for this host: `<host>-plugin-builder:<version>-<target>`.
pub fn image_tag(host: &HostIdentity) -> String {
    format!(
        "{}-plugin-builder:{}-{}",
        host.name, host.version, host.provenance.target
    )
}

/// The host's path crates, as its provenance lists them.
pub fn host_crates(host: &HostIdentity) -> Vec<HostCrate> {
    let record = &host.provenance;
    record
        .dependencies
        .iter()
        .filter_map(|d| match d.source_kind() {
            SourceKind::Path(dir) => Some(HostCrate {
                name: d.name().to_owned(),
                version: d.version().to_owned(),
                dir: PathBuf::from(dir),
                digest: record.digests.get(d.key()).cloned(),
            }),
            _ => None,
        })
        .collect()
}

/// The host's `Cargo.lock`: the first above the host's first path crate (its source
/// checkout), when there is one. The builder image holds the crates it locks, at its versions.
pub fn host_lockfile(host: &HostIdentity) -> Option<PathBuf> {
    let crates = host_crates(host);
    let from = crates.first().map(|c| c.dir.clone())?;
    from.ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
}

fn lockfile(host: &HostIdentity, options: &ContextOptions) -> Result<PathBuf, ContainerError> {
    if let Some(lock) = &options.lockfile {
        return Ok(lock.clone());
    }
    host_lockfile(host).ok_or_else(|| ContainerError::NoLockfile {
        from: host_crates(host)
            .first()
            .map(|c| c.dir.clone())
            .unwrap_or_else(|| PathBuf::from(".")),
    })
}

/// The digest of everything an image is made from: the host's provenance (toolchain,
/// crates and their digests), the CLI put in it, the host's lockfile and the base image's
/// name. An image labelled with the same key is the same image, and is reused.
pub fn context_key(
    host: &HostIdentity,
    options: &ContextOptions,
) -> Result<String, ContainerError> {
    let mut hasher = Sha256::new();
    hasher.update(CONTEXT_FORMAT);
    hasher.update(host.provenance.encode());
    hasher.update(sha256_file(&options.checker)?);
    let lock = lockfile(host, options)?;
    hasher.update(fs::read(&lock).map_err(ContainerError::io(&lock))?);
    hasher.update(&options.base_image);
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// Writes the build context for `host` into `dir` (created; it must be empty).
pub fn write_context(
    host: &HostIdentity,
    options: &ContextOptions,
    dir: &Path,
) -> Result<Context, ContainerError> {
    fs::create_dir_all(dir).map_err(ContainerError::io(dir))?;
    if fs::read_dir(dir)
        .map_err(ContainerError::io(dir))?
        .next()
        .is_some()
    {
        return Err(ContainerError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the context directory is not empty; name a new or empty one",
            ),
        });
    }
    let key = context_key(host, options)?;
    let crates = host_crates(host);

    // The host's path crates, checked unchanged since the host was built.
    for krate in &crates {
        copy_host_crate(krate, &dir.join("crates").join(&krate.name))?;
    }
    if crates
        .iter()
        .any(|c| uses_workspace(&dir.join("crates").join(&c.name)))
    {
        write_crates_workspace(&crates, &dir.join("crates"))?;
    }

    // The toolchain, as installed, without its documentation.
    let toolchain = toolchain::find(&host.provenance.rustc)?;
    copy_tree(&toolchain.sysroot, &dir.join("toolchain"), &|rel, _| {
        rel == Path::new("share/doc")
    })?;

    vendor(host, options, dir)?;

    let checker = dir.join("plugin-host");
    fs::copy(&options.checker, &checker).map_err(ContainerError::io(&checker))?;
    make_executable(&checker)?;

    let floor = glibc::glibc_needed(&options.checker)?.map(glibc::show);
    write(
        &dir.join("Containerfile"),
        &containerfile(host, options, &crates),
    )?;
    let info = serde_json::json!({
        "key": key,
        "image": image_tag(host),
        "base": options.base_image,
        "toolchain": toolchain.name,
        "rustc": host.provenance.rustc.short(),
        "glibc_floor": floor,
        "crates": crates.iter().map(|c| format!("{} {}", c.name, c.version)).collect::<Vec<_>>(),
    });
    write(
        &dir.join("plugin-builder.json"),
        &format!(
            "{}\n",
            serde_json::to_string_pretty(&info).unwrap_or_default()
        ),
    )?;
    Ok(Context {
        dir: dir.to_path_buf(),
        key,
        toolchain,
    })
}

fn copy_host_crate(krate: &HostCrate, to: &Path) -> Result<(), ContainerError> {
    let changed = |detail: String| ContainerError::HostCrateChanged {
        name: krate.name.clone(),
        path: krate.dir.clone(),
        detail,
    };
    if !krate.dir.join("Cargo.toml").is_file() {
        return Err(changed("no Cargo.toml there".into()));
    }
    let (digest, _) = plugin_api::build::crate_digest(&krate.dir).map_err(changed)?;
    if let Some(recorded) = &krate.digest {
        if &digest != recorded {
            return Err(changed(format!("digest {digest}, recorded {recorded}")));
        }
    }
    // What the digest covers and what a build may read beside it, without build output,
    // hidden directories or nested packages (as the digest skips them).
    let root = krate.dir.clone();
    copy_tree(&krate.dir, to, &|rel, is_dir| {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        is_dir
            && (name.starts_with('.')
                || rel == Path::new("target")
                || root.join(rel).join("Cargo.toml").is_file())
    })?;
    Ok(())
}

fn uses_workspace(dir: &Path) -> bool {
    fs::read_to_string(dir.join("Cargo.toml"))
        .map(|m| m.contains("workspace = true") || m.contains(".workspace=true"))
        .unwrap_or(false)
}

/// A workspace root for the copied path crates, carrying the `[workspace.*]` tables
/// (package fields, lints, dependencies) they inherit from the host's workspace.
fn write_crates_workspace(crates: &[HostCrate], to: &Path) -> Result<(), ContainerError> {
    let root = crates
        .iter()
        .flat_map(|c| c.dir.ancestors().skip(1))
        .map(|d| d.join("Cargo.toml"))
        .find(|m| {
            fs::read_to_string(m).is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        });
    let inherited = match &root {
        Some(manifest) => {
            workspace_tables(&fs::read_to_string(manifest).map_err(ContainerError::io(manifest))?)
        }
        None => String::new(),
    };
    let members: Vec<String> = crates.iter().map(|c| format!("{:?}", c.name)).collect();
    write(
        &to.join("Cargo.toml"),
        &format!(
            "# The host's path crates, as the host was built with them.\n[workspace]\nmembers = [{}]\nresolver = \"2\"\n{inherited}",
            members.join(", ")
        ),
    )
}

/// The `[workspace.…]` tables of a workspace manifest, as written.
fn workspace_tables(manifest: &str) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            keep = trimmed.starts_with("[workspace.");
            if keep {
                out.push('\n');
            }
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `cargo vendor` of a generated crate depending on every crate the host links, at the
/// host's versions, resolved with the host's lockfile (so build-time crates such as
/// proc-macros are the host's too); plus the source replacement pointing cargo at it.
fn vendor(host: &HostIdentity, options: &ContextOptions, dir: &Path) -> Result<(), ContainerError> {
    let scratch = tempfile::tempdir().map_err(ContainerError::io(std::env::temp_dir()))?;
    let set = scratch.path();
    let mut deps = String::new();
    for (i, d) in host.provenance.dependencies.iter().enumerate() {
        match d.source_kind() {
            SourceKind::Registry => deps.push_str(&format!(
                "dep{i} = {{ package = {:?}, version = \"={}\" }}\n",
                d.name(),
                d.version()
            )),
            SourceKind::Path(_) => {
                let copy = dir.join("crates").join(d.name());
                deps.push_str(&format!(
                    "dep{i} = {{ package = {:?}, path = {:?} }}\n",
                    d.name(),
                    copy.display().to_string()
                ));
            }
            _ => {}
        }
    }
    write(
        &set.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"plugin-builder-vendor-set\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[lib]\npath = \"lib.rs\"\n\n[workspace]\n\n[dependencies]\n{deps}"
        ),
    )?;
    write(&set.join("lib.rs"), "")?;
    let lock = lockfile(host, options)?;
    fs::copy(&lock, set.join("Cargo.lock")).map_err(ContainerError::io(&lock))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .arg("vendor")
        .arg("--manifest-path")
        .arg(set.join("Cargo.toml"))
        .arg(dir.join("vendor"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|source| ContainerError::Spawn {
            program: cargo.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ContainerError::CommandFailed {
            command: format!("cargo vendor (in {})", set.display()),
            status: out.status.to_string(),
            detail: tail(&out.stderr, 20),
        });
    }
    write(
        &dir.join(".cargo/config.toml"),
        &format!(
            "# Every crate comes from the vendored set: the host's crates at the host's versions.\n[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n[source.vendored-sources]\ndirectory = \"{IMAGE_ROOT}/vendor\"\n\n[net]\noffline = true\n"
        ),
    )
}

fn containerfile(host: &HostIdentity, options: &ContextOptions, crates: &[HostCrate]) -> String {
    let crates_list: Vec<String> = crates
        .iter()
        .map(|c| format!("{} {}", c.name, c.version))
        .collect();
    format!(
        r#"# The plugin builder for {name} {version} ({target}), generated by `plugin-host builder context`.
# Toolchain: rustc {rustc}; host path crates: {crates}.
FROM {base}
COPY toolchain {root}/toolchain
COPY crates {root}/crates
COPY vendor {root}/vendor
COPY .cargo/config.toml {root}/cargo/config.toml
COPY plugin-host /usr/local/bin/plugin-host
# Fixed paths and no clock: two builds of one crate are byte-identical.
ENV PATH={root}/toolchain/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME={root}/cargo \
    CARGO_TARGET_DIR=/build/target \
    CARGO_NET_OFFLINE=true \
    CARGO_INCREMENTAL=0 \
    SOURCE_DATE_EPOCH=0 \
    LANG=C.UTF-8
RUN rustc -vV && cargo -V && plugin-host host-info >/dev/null && ldd --version | head -n1
WORKDIR /build/crate
"#,
        name = host.name,
        version = host.version,
        target = host.provenance.target,
        rustc = host.provenance.rustc.short(),
        crates = crates_list.join(", "),
        base = options.base_image,
        root = IMAGE_ROOT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_workspace_tables() {
        let manifest = "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\nversion = \"0.1.0\"\n\n[workspace.lints.rust]\nmissing_docs = \"warn\"\n\n[package]\nname = \"x\"\n";
        let tables = workspace_tables(manifest);
        assert!(tables.contains("[workspace.package]\nversion = \"0.1.0\""));
        assert!(tables.contains("[workspace.lints.rust]\nmissing_docs"));
        assert!(!tables.contains("members") && !tables.contains("[package]"));
    }
}
