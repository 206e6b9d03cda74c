//! `new`: a plugin crate whose first build the host accepts under `--policy strict`.
//!
//! The crate depends on the host's own `plugin-api` (same version and source), records its
//! provenance from `build.rs`, pins the host's compiler in `rust-toolchain.toml` and the
//! host's profile settings in `Cargo.toml`, and comes with a `Cargo.lock` that starts from the
//! host's own (when the host's source checkout has one): every crate the host locks —
//! proc-macro and build-time crates too — is at the host's version, as the builder image holds
//! it. It is written in a scratch directory beside the target and moved into place at the
//! end: a failure leaves nothing half-written.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let blob: &[u8] = &[];
//! use builder::scaffold::{Kind, Scaffold};
//! let me = host::HostIdentity::from_blob(blob)?; // plugin_api::provenance_blob!()
//! let done = Scaffold::new("shout", Kind::Command).write(&me, "plugins/shout".as_ref())?;
//! assert!(done.report.accepted);
//! println!("now run `{}` in {}", done.build_command, done.dir.display());
//! # Ok(()) }
//! ```

mod template;

use std::fs;
use std::path::{Path, PathBuf};

use host::{HostIdentity, Policy};
use plugin_api::provenance::Dependency;
use serde::Serialize;

use crate::preflight::{
    build_command, cargo_profile_of, NotAligned, Preflight, PreflightError, Report, Scratch,
};

/// The capability the scaffolded plugin registers, named after the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Kind {
    /// A `command`: arguments in, text out.
    #[default]
    Command,
    /// A `transform`: bytes in, bytes out.
    Transform,
}

/// Where the scaffold's `plugin-api` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PluginApiSource {
    /// The host's own copy, as its provenance records it (path, git commit or exact version).
    #[default]
    Host,
    /// A local checkout.
    Path(PathBuf),
    /// A git repository, at a commit, branch or tag when given.
    Git {
        /// The repository URL.
        url: String,
        /// `rev = …`, when given.
        rev: Option<String>,
    },
    /// crates.io, with this version requirement.
    Registry(String),
}

/// A plugin crate to scaffold.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// The package name; also the name of the capability it registers.
    pub name: String,
    /// What it registers.
    pub kind: Kind,
    /// Where `plugin-api` comes from.
    pub plugin_api: PluginApiSource,
    /// Write into a non-empty directory, replacing the scaffold's own files there.
    pub force: bool,
}

/// Why a scaffold could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// Not a valid package name.
    #[error("`{0}` is not a valid plugin name: use ASCII letters, digits, `-` and `_`, starting with a letter")]
    BadName(String),
    /// The target directory holds files already.
    #[error("{}: the directory is not empty; choose another --path, or pass --force to write the scaffold's files into it", .0.display())]
    NotEmpty(PathBuf),
    /// The host records no usable `plugin-api`.
    #[error("the host's provenance lists no plugin-api; give its source with --plugin-api-path, --plugin-api-git or --plugin-api-version")]
    NoHostPluginApi,
    /// A file could not be written or moved.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Resolving or checking the new crate failed.
    #[error("checking the new crate: {0}")]
    Preflight(#[from] PreflightError),
}

/// A scaffolded crate.
#[derive(Debug, Clone, Serialize)]
pub struct Scaffolded {
    /// Where it is.
    pub dir: PathBuf,
    /// The command that builds a library the host accepts.
    pub build_command: String,
    /// Where that build puts the library.
    pub library: PathBuf,
    /// What resolving and aligning the lock did.
    pub applied: Vec<String>,
    /// What could not be aligned with the host (empty when the host's crates are reachable).
    pub not_aligned: Vec<NotAligned>,
    /// The strict preflight of the new crate.
    pub report: Report,
}

impl Scaffold {
    /// A scaffold of plugin `name` registering one capability of `kind`, on the host's
    /// `plugin-api`.
    pub fn new(name: &str, kind: Kind) -> Self {
        Scaffold {
            name: name.to_owned(),
            kind,
            plugin_api: PluginApiSource::Host,
            force: false,
        }
    }

    /// Writes the crate into `dir` (created; it must be empty or absent unless
    /// [`Self::force`]), resolves its lock to `host`'s versions and preflights it under
    /// `--policy strict`.
    pub fn write(&self, host: &HostIdentity, dir: &Path) -> Result<Scaffolded, ScaffoldError> {
        if !valid_name(&self.name) {
            return Err(ScaffoldError::BadName(self.name.clone()));
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ScaffoldError::Io { path, source }
        };
        let occupied = match fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(dir)(e)),
        };
        if occupied && !self.force {
            return Err(ScaffoldError::NotEmpty(dir.to_owned()));
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let parent = parent.canonicalize().map_err(io(&parent))?;
        let dir = parent.join(dir.file_name().ok_or_else(|| {
            io(dir)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a directory name",
            ))
        })?);

        let provenance = &host.provenance;
        let cargo_profile = cargo_profile_of(&provenance.profile.name).to_owned();
        let source = self.plugin_api_source(host)?;
        let scratch = Scratch::beside(&dir, "new")?;
        let files = template::files(&template::Values {
            name: &self.name,
            kind: self.kind,
            host,
            plugin_api: &source,
            cargo_profile: &cargo_profile,
        });
        for (file, text) in &files {
            let path = scratch.path().join(file);
            if let Some(p) = path.parent() {
                fs::create_dir_all(p).map_err(io(p))?;
            }
            fs::write(&path, text).map_err(io(&path))?;
        }
        // The lock starts as the host's: every crate the host locks — build-time and
        // proc-macro crates too, which the builder image holds only at those versions —
        // stays at the host's version; cargo adds the new package and drops the rest.
        let mut seeded = Vec::new();
        if let Some(host_lock) = crate::container::host_lockfile(host) {
            let lock = scratch.path().join("Cargo.lock");
            fs::copy(&host_lock, &lock).map_err(io(&host_lock))?;
            crate::cargo::cargo_offline_first(scratch.path(), &["update", "--workspace"])
                .map_err(PreflightError::from)?;
            seeded.push(format!(
                "Cargo.lock from the host's {}, then cargo update --workspace",
                host_lock.display()
            ));
        }
        let preflight = Preflight::new(host, Policy::preset("strict").expect("strict exists"));
        let (mut applied, not_aligned) = preflight
            .align_in_place(scratch.path(), &scratch.path().join("rust-toolchain.toml"))?;
        seeded.append(&mut applied);
        let applied = seeded;

        if occupied {
            // --force: the scaffold's files replace their namesakes; the rest stays. Each is
            // checked first, so that none is replaced unless all can be, and none is written
            // through a link (the directory, or one in it such as `src`, may be a link
            // planted by whoever made the directory).
            let names: Vec<PathBuf> = files
                .iter()
                .map(|(f, _)| PathBuf::from(f))
                .chain([PathBuf::from("Cargo.lock")])
                .collect();
            let refuse = |path: &Path, what: &str| {
                io(path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{what}: new --force replaces files only in real directories"),
                ))
            };
            for file in &names {
                let mut at = dir.clone();
                let mut steps = vec![at.clone()];
                for part in file.parent().into_iter().flat_map(Path::components) {
                    at.push(part);
                    steps.push(at.clone());
                }
                for step in steps {
                    match fs::symlink_metadata(&step) {
                        Ok(m) if m.is_dir() => {}
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(refuse(&step, "a symbolic link"))
                        }
                        Ok(_) => return Err(refuse(&step, "not a directory")),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&step)(e)),
                    }
                }
                if fs::symlink_metadata(dir.join(file)).is_ok_and(|m| m.is_dir()) {
                    return Err(refuse(&dir.join(file), "a directory"));
                }
            }
            for file in &names {
                let (from, to) = (scratch.path().join(file), dir.join(file));
                if let Some(p) = to.parent() {
                    fs::create_dir_all(p).map_err(io(p))?;
                }
                fs::rename(&from, &to).map_err(io(&to))?;
            }
        } else {
            // An empty directory is replaced by the finished one.
            if dir.is_dir() {
                fs::remove_dir(&dir).map_err(io(&dir))?;
            }
            scratch.persist(&dir).map_err(io(&dir))?;
        }
        let report = preflight.run(&dir)?;
        let library = dir
            .join("target")
            .join(&provenance.profile.name)
            .join(format!(
                "{}{}{}",
                std::env::consts::DLL_PREFIX,
                self.name.replace('-', "_"),
                std::env::consts::DLL_SUFFIX
            ));
        Ok(Scaffolded {
            dir,
            build_command: build_command(&cargo_profile),
            library,
            applied,
            not_aligned,
            report,
        })
    }

    /// The fields of the `plugin-api` dependency table.
    fn plugin_api_source(&self, host: &HostIdentity) -> Result<String, ScaffoldError> {
        let quote = |s: &str| toml_edit::Value::from(s).to_string().trim().to_owned();
        Ok(match &self.plugin_api {
            PluginApiSource::Host => {
                let dep = host
                    .provenance
                    .dependencies
                    .iter()
                    .find(|d| d.name() == "plugin-api")
                    .cloned()
                    .unwrap_or_else(|| {
                        Dependency::new("plugin-api", &host.provenance.plugin_api.to_string(), None)
                    });
                host::dependency_source(&dep)
            }
            PluginApiSource::Path(path) => {
                let path = path.canonicalize().map_err(|source| ScaffoldError::Io {
                    path: path.clone(),
                    source,
                })?;
                format!("path = {}", quote(&path.to_string_lossy()))
            }
            PluginApiSource::Git { url, rev } => match rev {
                Some(rev) => format!("git = {}, rev = {}", quote(url), quote(rev)),
                None => format!("git = {}", quote(url)),
            },
            PluginApiSource::Registry(req) => format!("version = {}", quote(req)),
        })
    }
}

/// A package name cargo accepts and that makes a usable library name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["shout", "my-plugin", "p2_x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "2fast", "-x", "a b", "a/b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
