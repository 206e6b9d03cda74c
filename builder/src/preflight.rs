//! Preflight: what the host will say about a plugin crate's build, before building it.
//!
//! The crate's resolved dependencies (its lockfile, through the recorder's own `cargo tree`
//! query), its toolchain (what `rustc -vV` says for the toolchain rustup would pick there —
//! rust-toolchain files, rustup overrides and `RUSTUP_TOOLCHAIN` count — read without running
//! any program the crate names: see [`crate::cargo`]), its profile (the root manifest's
//! `[profile.*]` over cargo's defaults) and its `plugin-api` make a predicted
//! [`Provenance`], which the host's own judge ([`host::judge`]) then judges under the policy:
//! preflight and `plugin-host check` agree by construction.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let blob: &[u8] = &[];
//! let me = host::HostIdentity::from_blob(blob)?; // plugin_api::provenance_blob!()
//! let report = builder::preflight::Preflight::new(&me, host::Policy::preset("strict")?)
//!     .run("my-plugin".as_ref())?;
//! for fix in &report.fixes {
//!     println!("{}: {}", fix.check, fix.action);
//! }
//! # Ok(()) }
//! ```

mod align;
mod manifest;

use std::path::{Path, PathBuf};

use host::{CheckKind, CheckStatus, HostIdentity, Policy, Verdict};
use plugin_api::provenance::{Dependency, Provenance, SourceKind};
use serde::Serialize;

pub(crate) use align::Scratch;
pub use align::{Alignment, NotAligned};
pub(crate) use manifest::PluginCrate;

use crate::cargo::{self, ToolError};
pub use crate::lockfile::ImageGap;

/// Why a crate could not be preflighted (as opposed to: it would be refused).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    /// No `Cargo.toml` in the directory.
    #[error("{}: no Cargo.toml here; give the directory of a plugin crate", .0.display())]
    NoManifest(PathBuf),
    /// The manifest is a virtual workspace manifest.
    #[error("{}: a workspace manifest without a [package]; give the plugin crate's own directory", .0.display())]
    NotAPackage(PathBuf),
    /// cargo cannot read the manifest.
    #[error("cannot read the manifest {}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// cargo's failure.
        source: ToolError,
    },
    /// `cargo metadata` printed something unexpected.
    #[error("unexpected `cargo metadata` output: {0}")]
    Metadata(String),
    /// Not a `cdylib`: nothing a host could load.
    #[error("`{name}` is not a plugin: its [lib] crate-type is [{crate_types}], without \"cdylib\"; add `crate-type = [\"cdylib\", \"rlib\"]` to [lib]")]
    NotACdylib {
        /// The package.
        name: String,
        /// Its lib crate types.
        crate_types: String,
    },
    /// No provenance recorder in the build script.
    #[error("`{name}` does not record its provenance: {} must call `plugin_api::build::record()` (with plugin-api in [build-dependencies], `features = [\"build\"]`), or the host refuses the library", build_script.as_ref().map_or("build.rs (absent)".to_owned(), |p| p.display().to_string()))]
    NoRecorder {
        /// The package.
        name: String,
        /// Its build script, when it has one.
        build_script: Option<PathBuf>,
    },
    /// No `plugin-api` dependency.
    #[error("`{0}` does not depend on plugin-api; add it to [dependencies]")]
    NoPluginApi(String),
    /// No lockfile: the versions a build would pick are not decided yet.
    #[error("{}: no Cargo.lock, so the versions a build would use are not decided yet; `plugin-host preflight --fix` resolves one aligned to the host", .0.display())]
    NoLockfile(PathBuf),
    /// The lock does not link a crate every plugin links.
    #[error("`{name}` does not link {missing} in its resolved dependencies")]
    NotLinked {
        /// The package.
        name: String,
        /// The crate it should link.
        missing: &'static str,
    },
    /// `rustc` or `cargo tree` failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The workspace could not be copied for `--fix` (a FIFO, a link out of it, …).
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// A TOML file is malformed.
    #[error("{}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// A preflight of plugin crates against one host, under one policy.
#[derive(Debug, Clone)]
pub struct Preflight<'a> {
    host: &'a HostIdentity,
    policy: Policy,
    cargo_profile: String,
}

/// The crate a report is about.
#[derive(Debug, Clone, Serialize)]
pub struct CrateRef {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The workspace root, whose lockfile and profiles count.
    pub workspace_root: PathBuf,
    /// The rust-toolchain file that picks its compiler, if one does (not when
    /// `RUSTUP_TOOLCHAIN`, `$RUSTC` or a rustup override decides over it).
    pub toolchain_file: Option<PathBuf>,
    /// What picks its compiler, as rustup decides it.
    pub toolchain: cargo::ToolchainChoice,
    /// The cargo profile the prediction is for (`dev`, `release`).
    pub cargo_profile: String,
}

/// One thing to change so the host accepts the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// The check it fixes.
    pub check: CheckKind,
    /// What to do, in words.
    pub action: String,
    /// The command that does it, run in the crate's directory, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// What preflight predicts.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `name version` of the host.
    pub host: String,
    /// The crate.
    #[serde(rename = "crate")]
    pub krate: CrateRef,
    /// The policy's name.
    pub policy: String,
    /// Whether the host would accept the build under the policy.
    pub accepted: bool,
    /// The reason code of the refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The host's judgement of the predicted build: every check and the differing crates.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What to change, for every check that fails or warns.
    pub fixes: Vec<Fix>,
    /// The predicted provenance of the build.
    pub predicted: Provenance,
    /// Whether the builder image (`plugin-host builder build`) holds every crate of the lock;
    /// `None` when the host's Cargo.lock is not found (the host's source checkout is gone).
    pub builder_image: Option<ImagePrediction>,
}

/// What preflight predicts of a build in the builder image: it holds only the crates of the
/// host's lock, at the host's versions, and has no network.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePrediction {
    /// The host's Cargo.lock the crate's lock was compared with.
    pub host_lockfile: PathBuf,
    /// The crates of the crate's lock (build-time and proc-macro crates too) the image does
    /// not hold: a build there fails until each is moved to the host's version.
    pub missing: Vec<ImageGap>,
}

impl<'a> Preflight<'a> {
    /// A preflight against `host` under `policy`, for a build with the host's profile.
    pub fn new(host: &'a HostIdentity, policy: Policy) -> Self {
        Preflight {
            cargo_profile: cargo_profile_of(&host.provenance.profile.name).to_owned(),
            host,
            policy,
        }
    }

    /// Predicts a build with cargo profile `name` (`dev`, `release`) instead of the host's.
    pub fn with_cargo_profile(mut self, name: &str) -> Self {
        name.clone_into(&mut self.cargo_profile);
        self
    }

    /// The host it judges against.
    pub fn host(&self) -> &HostIdentity {
        self.host
    }

    /// Predicts the provenance of the crate in `dir` and judges it.
    pub fn run(&self, dir: &Path) -> Result<Report, PreflightError> {
        // `rustc -vV` and `cargo metadata` are independent: run them side by side.
        let (krate, compiler) = std::thread::scope(|s| {
            let compiler = s.spawn(|| cargo::rustc(dir));
            let krate = PluginCrate::read(dir);
            let compiler = compiler
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (krate, compiler)
        });
        let krate = krate?;
        let (rustc, target, choice) = compiler?;
        let predicted = self.predict_with(&krate, (rustc, target))?;
        let verdict = host::judge(&self.host.provenance, &predicted, &self.policy);
        let fixes = fixes(
            &self.host.provenance,
            &predicted,
            &verdict,
            &self.cargo_profile,
        );
        let builder_image = self.image_prediction(&krate)?;
        Ok(Report {
            builder_image,
            host: format!("{} {}", self.host.name, self.host.version),
            krate: CrateRef {
                name: krate.name.clone(),
                version: krate.version.to_string(),
                dir: dir.to_owned(),
                workspace_root: krate.root.clone(),
                toolchain_file: choice.file().map(Path::to_owned),
                toolchain: choice,
                cargo_profile: self.cargo_profile.clone(),
            },
            policy: self.policy.name().to_owned(),
            accepted: verdict.failure().is_none(),
            reason: verdict.failure().map(|c| c.check.reason().to_string()),
            verdict,
            fixes,
            predicted,
        })
    }

    /// The crates of `krate`'s lock the builder image does not hold, when the host's lock is
    /// found.
    fn image_prediction(
        &self,
        krate: &PluginCrate,
    ) -> Result<Option<ImagePrediction>, PreflightError> {
        let Some(host_lockfile) = crate::container::host_lockfile(self.host) else {
            return Ok(None);
        };
        let missing = crate::lockfile::gaps_between(&host_lockfile, &krate.lockfile()).map_err(
            |message| PreflightError::Io {
                path: krate.lockfile(),
                source: std::io::Error::other(message),
            },
        )?;
        Ok(Some(ImagePrediction {
            host_lockfile,
            missing,
        }))
    }

    /// The provenance the recorder would write for a build of `krate` in `dir`.
    fn predict(&self, dir: &Path, krate: &PluginCrate) -> Result<Provenance, PreflightError> {
        let (rustc, target, _) = cargo::rustc(dir)?;
        self.predict_with(krate, (rustc, target))
    }

    /// [`Self::predict`], with the compiler `rustc -vV` in `dir` reported and its host triple.
    fn predict_with(
        &self,
        krate: &PluginCrate,
        (rustc, target): (plugin_api::provenance::Rustc, String),
    ) -> Result<Provenance, PreflightError> {
        if !krate.lockfile().is_file() {
            return Err(PreflightError::NoLockfile(krate.root.clone()));
        }
        let spec = format!("{}@{}", krate.name, krate.version);
        let dependencies = cargo::linked_crates(&krate.manifest, &spec, &target)?;
        let linked = |missing: &'static str| {
            dependencies
                .iter()
                .find(|d| d.name() == missing)
                .and_then(|d| d.version().parse().ok())
                .ok_or_else(|| PreflightError::NotLinked {
                    name: krate.name.clone(),
                    missing,
                })
        };
        let mut digests = std::collections::BTreeMap::new();
        for d in &dependencies {
            if let SourceKind::Path(path) = d.source_kind() {
                let (digest, _) =
                    plugin_api::build::crate_digest(Path::new(path)).map_err(|message| {
                        PreflightError::Io {
                            path: PathBuf::from(path),
                            source: std::io::Error::other(message),
                        }
                    })?;
                digests.insert(d.key().to_owned(), digest);
            }
        }
        Ok(Provenance {
            name: krate.name.clone(),
            version: krate.version.clone(),
            plugin_api: linked("plugin-api")?,
            abi_stable: linked("abi_stable")?,
            rustc,
            target,
            profile: krate.profile(&self.cargo_profile)?,
            features: krate.features.clone(),
            dependencies,
            digests,
            // Not part of the verdict preflight predicts.
            capabilities: None,
        })
    }
}

/// The cargo profile that records profile name `recorded` (`debug` → `dev`).
pub fn cargo_profile_of(recorded: &str) -> &str {
    match recorded {
        "debug" => "dev",
        other => other,
    }
}

/// The `cargo build` command line for a cargo profile.
pub fn build_command(cargo_profile: &str) -> String {
    match cargo_profile {
        "dev" => "cargo build".to_owned(),
        "release" => "cargo build --release".to_owned(),
        other => format!("cargo build --profile {other}"),
    }
}

/// A `cargo update` that moves one crate of the plugin's lock to the host's version, or why
/// none can.
pub(crate) enum Update {
    /// `cargo update -p NAME@FROM --precise TO`.
    Precise {
        name: String,
        from: String,
        to: String,
    },
    /// The plugin's requirement picks another series, or the host's copy is not from a
    /// registry: the manifest must change.
    Manifest { name: String, action: String },
}

impl Update {
    pub(crate) fn command(name: &str, from: &str, to: &str) -> String {
        update_command(name, from, to)
    }
}

/// `cargo update -p NAME@FROM --precise TO`.
pub(crate) fn update_command(name: &str, from: &str, to: &str) -> String {
    format!("cargo update -p {name}@{from} --precise {to}")
}

/// For every crate both link at other versions: the update that aligns it.
pub(crate) fn updates(host: &Provenance, plugin: &Provenance) -> Vec<Update> {
    let mut out = Vec::new();
    for d in &plugin.dependencies {
        let host_versions: Vec<&Dependency> = host
            .dependencies
            .iter()
            .filter(|h| h.name() == d.name())
            .collect();
        if host_versions.is_empty() || host_versions.iter().any(|h| h.version() == d.version()) {
            continue;
        }
        let registry = matches!(host_versions[0].source_kind(), SourceKind::Registry);
        let same_series = host_versions.iter().find(|h| {
            match (
                semver::Version::parse(h.version()),
                semver::Version::parse(d.version()),
            ) {
                (Ok(a), Ok(b)) => series(&a) == series(&b),
                _ => false,
            }
        });
        match (registry, same_series) {
            (true, Some(h)) => out.push(Update::Precise {
                name: d.name().to_owned(),
                from: d.version().to_owned(),
                to: h.version().to_owned(),
            }),
            (true, None) => {
                let newest = host_versions[host_versions.len() - 1];
                out.push(Update::Manifest {
                    name: d.name().to_owned(),
                    action: format!(
                        "the plugin's requirements pick {} {}, of another series than the host's {}: require `{}` instead",
                        d.name(),
                        d.version(),
                        newest.version(),
                        host::dependency_line(newest)
                    ),
                })
            }
            (false, _) => out.push(Update::Manifest {
                name: d.name().to_owned(),
                action: format!(
                    "build against the host's copy of {}: `{}` in the plugin's Cargo.toml",
                    d.name(),
                    host::dependency_line(host_versions[0])
                ),
            }),
        }
    }
    out
}

pub(crate) fn series(v: &semver::Version) -> (u64, u64) {
    if v.major > 0 {
        (v.major, 0)
    } else {
        (0, v.minor)
    }
}

/// The fixes for every check that does not pass cleanly.
fn fixes(host: &Provenance, plugin: &Provenance, verdict: &Verdict, profile: &str) -> Vec<Fix> {
    let mut fixes = Vec::new();
    for check in &verdict.checks {
        let differs = check.status != CheckStatus::Pass || !check.message.is_empty();
        if !differs {
            continue;
        }
        let kind = check.check;
        let mut push = |action: String, command: Option<String>| {
            fixes.push(Fix {
                check: kind,
                action,
                command,
            })
        };
        match kind {
            CheckKind::Target => push(
                format!("build for the host's target {}", host.target),
                Some(format!("cargo build --target {}", host.target)),
            ),
            CheckKind::Rustc => match host::toolchain_name(&host.rustc) {
                Some((toolchain, guessed)) => push(
                    format!(
                        "build with the host's compiler {}{}: pin it for this directory (or let `plugin-host preflight --fix` write rust-toolchain.toml)",
                        toolchain,
                        if guessed { " (toolchain name guessed from the commit date)" } else { "" }
                    ),
                    Some(format!("rustup override set {toolchain}")),
                ),
                None => push(
                    format!(
                        "build with a rustc built from commit {} (the host's compiler has no rustup name)",
                        host.rustc.commit_hash
                    ),
                    None,
                ),
            },
            CheckKind::PanicStrategy => push(
                format!(
                    "set `panic = \"{}\"` in [profile.{profile}] of the workspace root's Cargo.toml",
                    host.profile.panic
                ),
                None,
            ),
            CheckKind::Profile => {
                let wanted = cargo_profile_of(&host.profile.name);
                if wanted != profile {
                    push(
                        format!("build with the host's profile ({})", host.profile.name),
                        Some(build_command(wanted)),
                    )
                } else {
                    push(
                        format!(
                            "set `opt-level = {}` and `debug-assertions = {}` in [profile.{profile}] of the workspace root's Cargo.toml",
                            toml_opt_level(&host.profile.opt_level),
                            host.profile.debug_assertions
                        ),
                        None,
                    )
                }
            }
            CheckKind::Dependencies => {
                for update in updates(host, plugin) {
                    match update {
                        Update::Precise { name, from, to } => push(
                            format!("align {name} {from} with the host's {to}"),
                            Some(Update::command(&name, &from, &to)),
                        ),
                        Update::Manifest { action, .. } => push(action, None),
                    }
                }
                if verdict.differences.iter().any(|d| d.content_only) {
                    push(check.message.clone(), None);
                }
            }
            // plugin-api, abi_stable: the judge's message names the dependency line.
            _ => push(check.message.clone(), None),
        }
    }
    fixes
}

/// An opt-level as TOML: a number, or a quoted `s`/`z`.
pub(crate) fn toml_opt_level(level: &str) -> String {
    if level.parse::<u8>().is_ok() {
        level.to_owned()
    } else {
        format!("\"{level}\"")
    }
}
