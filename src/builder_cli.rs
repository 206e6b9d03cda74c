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
    },
}

#[derive(Args)]
pub struct EngineArg {
    /// Container engine: auto (podman, else docker), podman, docker, or none (build on this
    /// machine with the host's toolchain).
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

fn made(what: &str, name: &str, made: Made) {
    match made {
        Made::Reused => println!("{what} {name}: up to date (reused)"),
        _ => println!("{what} {name}: built"),
    }
}

/// Runs a `builder` subcommand. Its errors are printed here, whole: they quote the build's
/// own output (compiler messages, the strict check's report) over several lines.
pub fn run(command: BuilderCommand, host: HostIdentity) -> Result<ExitCode> {
    match run_command(command, host) {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<container::ContainerError>() {
            Some(error) => {
                eprintln!("error: {error}");
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
            println!(
                "wrote {} (toolchain {}, key {})",
                written.dir.display(),
                written.toolchain.name,
                written.key
            );
            println!(
                "build it: podman build --runtime runc --pull=never -t {} {}",
                container::image_tag(&host),
                written.dir.display()
            );
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
            );
        }
        BuilderCommand::Image {
            engine,
            inputs,
            context,
        } => {
            let engine = engine.engine()?;
            let outcome =
                container::make_image(&engine, &host, &inputs.options()?, context.as_deref())?;
            made("builder image", &container::image_tag(&host), outcome);
        }
        BuilderCommand::Build {
            crate_dir,
            out,
            engine,
        } => {
            let engine = Engine::find(engine.choice()?)?;
            let request = container::BuildRequest {
                crate_dir,
                out_dir: out,
                checker: std::env::current_exe().context("cannot find this program's own file")?,
            };
            let built = container::build_plugin(&host, engine.as_ref(), &request)?;
            println!("{}  sha256:{}", built.path.display(), built.sha256);
        }
    }
    Ok(ExitCode::SUCCESS)
}
