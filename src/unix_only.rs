//! What the CLI cannot do outside Unix, as it says so there: the plugin builder (`new`,
//! `preflight`, `builder`: containers and descriptor-relative copies), process isolation
//! (`--isolate`, `--call-timeout`, `--worker`, `isolation = "process"`, `__worker`) and the
//! `SIGHUP` reload. Each is refused with an error naming it (exit status 2) before anything
//! else is done; the commands themselves keep their names, so `--help` still lists them and a
//! script fails loudly rather than with "unrecognized subcommand". See the book's "Windows"
//! chapter.

use anyhow::{anyhow, Error};

/// The error for `what`, which needs `because`, absent here.
pub fn unavailable(what: &str, because: &str) -> Error {
    anyhow!(
        "{what} is not available on Windows: it needs {because}, which only the Unix build has; \
         run it on Linux (see the book's \"Windows\" chapter for what the Windows build does)"
    )
}

/// `--isolate`, `--call-timeout`, `--worker` and process isolation in the configuration.
pub fn isolation(what: &str) -> Error {
    unavailable(what, "process isolation (worker processes)")
}

/// `new` and `preflight`, whose arguments are taken as given and refused.
pub mod authoring {
    use std::ffi::OsString;
    use std::process::ExitCode;

    use anyhow::Result;
    use clap::Args;
    use host::{HostIdentity, Policy};

    /// `plugin-host new` (Unix only).
    #[derive(Args)]
    pub struct NewArgs {
        /// The arguments of `new` on Unix.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    }

    /// `plugin-host preflight` (Unix only).
    #[derive(Args)]
    pub struct PreflightArgs {
        /// The arguments of `preflight` on Unix.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    }

    /// Refuses `new`.
    pub fn new(_: NewArgs, _: &HostIdentity) -> Result<ExitCode> {
        Err(super::unavailable(
            "`plugin-host new`",
            "the plugin builder (plugin-builder)",
        ))
    }

    /// Refuses `preflight`.
    pub fn preflight(_: PreflightArgs, _: &HostIdentity, _: Policy) -> Result<ExitCode> {
        Err(super::unavailable(
            "`plugin-host preflight`",
            "the plugin builder (plugin-builder)",
        ))
    }
}

/// `builder`, whose subcommands are taken as given and refused.
pub mod builder_cli {
    use std::ffi::OsString;
    use std::process::ExitCode;

    use anyhow::Result;
    use clap::Subcommand;
    use host::HostIdentity;

    /// `plugin-host builder …` (Unix only).
    #[derive(Subcommand)]
    pub enum BuilderCommand {
        /// Any subcommand of `builder` on Unix.
        #[command(external_subcommand)]
        Any(Vec<OsString>),
    }

    /// Refuses `builder`.
    pub fn run(command: BuilderCommand, _: HostIdentity) -> Result<ExitCode> {
        let BuilderCommand::Any(args) = command;
        let sub = args
            .first()
            .map(|a| a.to_string_lossy())
            .unwrap_or_default();
        Err(super::unavailable(
            &format!("`plugin-host builder {}`", host::text::printable(&sub)),
            "the builder's container images (podman or docker with Linux containers)",
        ))
    }
}

/// No `SIGHUP` here, and no isolated plugin to reload.
pub mod reload_signal {
    use host::Host;

    /// Nothing to block: there is no `SIGHUP`.
    pub fn block_sighup() {}

    /// Runs `body`: no isolated plugin can be loaded, so there is nothing to reload.
    pub fn reloading_on_sighup<R>(_: &Host, body: impl FnOnce() -> R) -> R {
        body()
    }
}
