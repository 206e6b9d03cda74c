//! `plugin-host`: the command-line face of the `host` loader.
//!
//! See `plugin-host --help`, and the book (docs/src/reference/cli.md) for the contract of each command.

/// `println!` for command output that ends quietly when the reader has gone (`plugin-host
/// lock | head -c 10`): see [`output::print_line`]. Evaluates to `std::io::Result<()>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::print_line(format_args!($($arg)*))
    };
}

/// A line on stderr that never panics: `eprintln!` panics when stderr cannot be written (a
/// full disk, a closed pipe), which turned every error's exit status into 101.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[cfg(unix)]
mod authoring;
#[cfg(unix)]
mod builder_cli;
mod builtins;
mod cli;
mod config_cli;
mod configured;
mod host_flags;
mod isolation_flags;
mod output;
mod registry_cli;
#[cfg(unix)]
mod reload_signal;
mod stream;
mod trust_cli;
#[cfg(not(unix))]
mod unix_only;
#[cfg(not(unix))]
use unix_only::{authoring, builder_cli, reload_signal};

use std::process::ExitCode;

use clap::Parser;

/// The section's bytes, 4-byte aligned as ELF notes must be.
#[cfg(target_os = "linux")]
#[repr(C, align(4))]
struct ProvenanceNote([u8; plugin_api::__provenance_section!().len()]);

/// This binary's build provenance as an ELF note (`.note.plgwork`, named `PLGWORK`): how a
/// host reads a **worker**'s toolchain without running it (`host::read_worker_provenance`,
/// `--worker`). The same bytes `provenance_blob!()` gives `identity()`, framed as a note.
// SAFETY (`link_section`): the static is plain bytes that nothing reads through a pointer;
// placing it in a note section of its own changes no other item's layout.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".note.plgwork")]
static PROVENANCE_NOTE: ProvenanceNote = {
    // Copy the bytes into an array: a static of its own bytes, no pointer.
    let section = plugin_api::__provenance_section!();
    let mut bytes = [0u8; plugin_api::__provenance_section!().len()];
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = section[i];
        i += 1;
    }
    // A worker's note has a name of its own: a plugin reader never takes this binary for a
    // plugin (its provenance note is `PLGPROV`), only the worker reader looks for it.
    let name = *plugin_api::frame::WORKER_NOTE_NAME;
    let mut j = 0;
    while j < name.len() {
        bytes[12 + j] = name[j];
        j += 1;
    }
    ProvenanceNote(bytes)
};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = cli::init_logging(&cli.log) {
        errln!("error: {}", host::text::printable(&chain_text(&e)));
        return ExitCode::from(2);
    }
    match cli::run(cli) {
        Ok(code) => code,
        // `plugin-host … | head` closing the pipe early is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {}", host::text::printable(&chain_text(&e)));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, `: `-separated, each said once: a cause whose text the message
/// so far already holds is skipped. Library errors include their source in their own message
/// (so that `{e}` alone is complete, as `PluginReport::message` and embedders use it) and also
/// return it from `source()`; printing the whole chain (`{e:#}`) said it twice (`No such file
/// or directory (os error 2): No such file or directory (os error 2)`).
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
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
