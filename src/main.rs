//! `plugin-host`: the command-line face of the `host` loader.
//!
//! See `plugin-host --help`, and the README for the contract of each command.

mod authoring;
mod builder_cli;
mod builtins;
mod cli;
mod config_cli;
mod configured;
mod output;
mod reload_signal;
mod stream;
mod trust_cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = cli::init_logging(&cli.log) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match cli::run(cli) {
        Ok(code) => code,
        // `plugin-host … | head` closing the pipe early is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", host::text::printable(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}
