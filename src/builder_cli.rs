//! `plugin-host builder …`: the builder container image and plugin builds through it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use builder::container::{self, BaseOptions, ContextOptions, Engine, EngineChoice, Made};
use clap::{Args, Subcommand};
use host::HostIdentity;

/// The `builder` subcommands.
#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Write the builder image's build context: Containerfile, the host's toolchain, its
    /// crates vendored, this CLI.
    Context {
        /// The directory to write (new or empty).
        dir: PathBuf,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Make the local base image the builder image starts from (debootstrap; nothing is
    /// pulled). Kept when an image of that name exists.
    Base {
        #[command(flatten)]
        engine: EngineArg,
        /// The base image's name.
        #[arg(long, default_value = container::DEFAULT_BASE)]
        image: String,
        /// The Debian suite: its glibc is what plugins link against.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// The Debian mirror (default: this machine's apt source).
        #[arg(long)]
        mirror: Option<String>,
    },
    /// Build the builder image `<host>-plugin-builder:<version>-<target>` (kept while its
    /// inputs are unchanged).
    Image {
        #[command(flatten)]
        engine: EngineArg,
        #[command(flatten)]
        inputs: Inputs,
        /// Keep the build context in this directory (new or empty).
        #[arg(long, value_name = "DIR")]
        context: Option<PathBuf>,
    },
    /// Build a plugin crate in the builder image (network off), check it under --policy
    /// strict, and write `<plugin>-<version>+<host>-<host-version>-<target>.<ext>` to --out.
    Build {
        /// The plugin crate's directory.
        crate_dir: PathBuf,
        /// Where the built file goes.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        engine: EngineArg,
        /// Also publish the built file to oci://REGISTRY/REPOSITORY:TAG, as a build for this
        /// host (see `plugin-host publish`).
        #[arg(long, value_name = "REFERENCE")]
        publish: Option<String>,
    },
    /// Build a worker for plugins built by another compiler: this CLI built from the host's
    /// source with toolchain TOOLCHAIN (`cargo +TOOLCHAIN build -p plugin-host`), copied to
    /// `--out` as `plugin-host-worker-<toolchain>`; pass it to `--worker`. Needs the host's
    /// source checkout (found from this binary's provenance, or `--source`) and rustup.
    Worker {
        /// The rustup toolchain to build with, e.g. `nightly` or `1.80.0`.
        #[arg(long)]
        toolchain: String,
        /// Where the worker binary goes.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The host's workspace (default: where this binary was built from).
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// The target directory (default: `<source>/target/worker-<toolchain>`).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// The profile to build with (default: the host's, which is the profile of plugins
        /// built for it; under `--policy strict` a worker's profile must be its plugins').
        #[arg(long, value_enum, value_name = "PROFILE")]
        profile: Option<WorkerProfile>,
        /// The same as `--profile release`.
        #[arg(long, hide = true, conflicts_with = "profile")]
        release: bool,
    },
}

/// The cargo profile of a worker build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerProfile {
    /// `cargo build` (`target/…/debug`).
    Debug,
    /// `cargo build --release`.
    Release,
}

impl WorkerProfile {
    /// The host's profile, as its provenance records it.
    fn of(host: &HostIdentity) -> Self {
        if host.provenance.profile.name == "release" {
            WorkerProfile::Release
        } else {
            WorkerProfile::Debug
        }
    }
}

#[derive(Args)]
pub struct EngineArg {
    /// Container engine: auto (podman, else docker), podman or docker; `builder build` also
    /// takes none (build on this machine with the host's toolchain).
    #[arg(long, default_value = "auto", value_name = "ENGINE")]
    engine: String,
}

impl EngineArg {
    fn choice(&self) -> Result<EngineChoice> {
        EngineChoice::parse(&self.engine).ok_or_else(|| {
            anyhow!(
                "unknown engine `{}`; engines: auto, podman, docker, none",
                self.engine
            )
        })
    }

    fn engine(&self) -> Result<Engine> {
        Engine::find(self.choice()?)?.ok_or_else(|| {
            anyhow!("this command needs a container engine: --engine auto, podman or docker")
        })
    }
}

#[derive(Args)]
pub struct Inputs {
    /// The host's Cargo.lock (default: found above the host's plugin-api).
    #[arg(long, value_name = "PATH")]
    lockfile: Option<PathBuf>,
    /// The local base image the Containerfile starts FROM.
    #[arg(long, default_value = container::DEFAULT_BASE)]
    base: String,
}

impl Inputs {
    fn options(&self) -> Result<ContextOptions> {
        Ok(ContextOptions {
            checker: std::env::current_exe().context("cannot find this program's own file")?,
            lockfile: self.lockfile.clone(),
            base_image: self.base.clone(),
        })
    }
}

fn made(what: &str, name: &str, made: Made) -> std::io::Result<()> {
    match made {
        Made::Reused => outln!("{what} {name}: up to date (reused)"),
        _ => outln!("{what} {name}: built"),
    }
}

/// Runs a `builder` subcommand. Its errors are printed here, whole: they quote the build's
/// own output (compiler messages, the strict check's report) over several lines.
pub fn run(command: BuilderCommand, host: HostIdentity) -> Result<ExitCode> {
    match run_command(command, host) {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<container::ContainerError>() {
            Some(error) => {
                // Over several lines, each escaped: file names from the crate, and its
                // build's own output (already escaped: escaping again leaves it as it is).
                let text = error.to_string();
                let lines: Vec<_> = text.lines().map(host::text::printable).collect();
                errln!("error: {}", lines.join("\n"));
                Ok(ExitCode::from(2))
            }
            None => Err(e),
        },
    }
}

fn run_command(command: BuilderCommand, host: HostIdentity) -> Result<ExitCode> {
    match command {
        BuilderCommand::Context { dir, inputs } => {
            let written = container::write_context(&host, &inputs.options()?, &dir)?;
            outln!(
                "wrote {} (toolchain {}, key {})",
                written.dir.display(),
                written.toolchain.name,
                written.key
            )?;
            outln!(
                "build it: podman build --runtime runc --pull=never -t {} {}",
                container::image_tag(&host),
                written.dir.display()
            )?;
        }
        BuilderCommand::Base {
            engine,
            image,
            suite,
            mirror,
        } => {
            let engine = engine.engine()?;
            let options = BaseOptions {
                image: image.clone(),
                suite,
                mirror,
            };
            made(
                "base image",
                &image,
                container::make_base(&engine, &options)?,
            )?;
        }
        BuilderCommand::Image {
            engine,
            inputs,
            context,
        } => {
            let engine = engine.engine()?;
            let outcome =
                container::make_image(&engine, &host, &inputs.options()?, context.as_deref())?;
            made("builder image", &container::image_tag(&host), outcome)?;
        }
        BuilderCommand::Build {
            crate_dir,
            out,
            engine,
            publish,
        } => {
            // A bad reference is an error before minutes of building.
            if let Some(to) = &publish {
                plugin_registry::Reference::parse(to)?;
            }
            let engine = Engine::find(engine.choice()?)?;
            let request = container::BuildRequest {
                crate_dir,
                out_dir: out,
                checker: std::env::current_exe().context("cannot find this program's own file")?,
            };
            let built = container::build_plugin(&host, engine.as_ref(), &request)?;
            outln!("{}  sha256:{}", built.path.display(), built.sha256)?;
            if let Some(to) = &publish {
                crate::registry_cli::publish_built(&built.path, to, &host)?;
            }
        }
        BuilderCommand::Worker {
            toolchain,
            out,
            source,
            target_dir,
            profile,
            release,
        } => {
            let profile = worker_profile(&host, profile, release);
            let request = WorkerRequest {
                toolchain,
                out,
                source,
                target_dir,
                release: profile == WorkerProfile::Release,
            };
            let path = build_worker(&host, &request)?;
            outln!("{}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The profile a worker is built with: the one asked for, else the host's (a worker for
/// plugins built for this host, with its profile, as `--policy strict` requires).
fn worker_profile(
    host: &HostIdentity,
    asked: Option<WorkerProfile>,
    release: bool,
) -> WorkerProfile {
    match (asked, release) {
        (Some(profile), _) => profile,
        (None, true) => WorkerProfile::Release,
        (None, false) => WorkerProfile::of(host),
    }
}

/// What `builder worker` builds.
struct WorkerRequest {
    toolchain: String,
    out: PathBuf,
    source: Option<PathBuf>,
    target_dir: Option<PathBuf>,
    release: bool,
}

/// The host's workspace: the parent of the `host` crate this binary was built from (its
/// provenance lists it with its path), when that directory still has a Cargo.toml.
fn host_source(host: &HostIdentity) -> Option<PathBuf> {
    let dep = host
        .provenance
        .dependencies
        .iter()
        .find(|d| d.name() == "host")?;
    let plugin_api::provenance::SourceKind::Path(path) = dep.source_kind() else {
        return None;
    };
    let workspace = std::path::Path::new(path).parent()?;
    workspace
        .join("Cargo.toml")
        .is_file()
        .then(|| workspace.to_owned())
}

/// Builds the worker and copies it to `out`; returns the copy's path.
fn build_worker(host: &HostIdentity, request: &WorkerRequest) -> Result<PathBuf> {
    let source = match &request.source {
        Some(dir) => dir.clone(),
        None => host_source(host).ok_or_else(|| {
            anyhow!(
                "cannot find the host's source checkout (this binary's provenance names none \
                 that still exists); pass `--source DIR`"
            )
        })?,
    };
    let safe: String = request
        .toolchain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let target = request
        .target_dir
        .clone()
        .unwrap_or_else(|| source.join("target").join(format!("worker-{safe}")));
    let mut command = std::process::Command::new("cargo");
    command
        .arg(format!("+{}", request.toolchain))
        .args(["build", "-p", "plugin-host", "--target-dir"])
        .arg(&target)
        .current_dir(&source)
        // The toolchain is the one asked for, not whatever started this process.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR");
    if request.release {
        command.arg("--release");
    }
    errln!(
        "building a worker: cargo +{} build -p plugin-host{} in {}",
        request.toolchain,
        if request.release { " --release" } else { "" },
        source.display()
    );
    let status = command
        .status()
        .context("cannot run `cargo` (rustup's proxy is needed for `+TOOLCHAIN`)")?;
    if !status.success() {
        return Err(anyhow!(
            "`cargo +{} build -p plugin-host` in {} failed ({status})",
            request.toolchain,
            source.display()
        ));
    }
    let built = target
        .join(if request.release { "release" } else { "debug" })
        .join(format!("plugin-host{}", std::env::consts::EXE_SUFFIX));
    let provenance = host::read_worker_provenance(&built)?;
    let name = plugin_isolate::worker_file_name(&provenance.rustc);
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("cannot create {}", request.out.display()))?;
    let path = request.out.join(name);
    // Through a new temporary file renamed over it: a worker in use is never rewritten in
    // place, and nothing is written through a link planted at either name.
    let mut source =
        std::fs::File::open(&built).with_context(|| format!("cannot read {}", built.display()))?;
    host::small_file::write_atomically_with(&path, |out| {
        use std::os::unix::fs::PermissionsExt;
        std::io::copy(&mut source, out)?;
        out.set_permissions(std::fs::Permissions::from_mode(0o755))
    })
    .with_context(|| format!("cannot copy {} to {}", built.display(), path.display()))?;
    errln!("worker built by rustc {}", provenance.rustc.short());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_built_with_the_hosts_profile_unless_told() {
        let mut host = HostIdentity::from_blob(plugin_api::provenance_blob!()).unwrap();
        for (recorded, wanted) in [
            ("release", WorkerProfile::Release),
            ("debug", WorkerProfile::Debug),
        ] {
            host.provenance.profile.name = recorded.into();
            assert_eq!(worker_profile(&host, None, false), wanted, "{recorded}");
            assert_eq!(
                worker_profile(&host, Some(WorkerProfile::Debug), false),
                WorkerProfile::Debug
            );
            assert_eq!(worker_profile(&host, None, true), WorkerProfile::Release);
        }
    }
}
