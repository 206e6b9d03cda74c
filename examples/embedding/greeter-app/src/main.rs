// ANCHOR: all
//! `greeter-app`: loads the plugins in a directory and greets someone with one of their
//! greeters.
//!
//! ```text
//! $ greeter-app plugins polite Ada
//! loaded   greeter-plugin 0.1.0 [greeter:polite] plugins/libgreeter_plugin.so
//! Good day, Ada.
//! ```
//!
//! With `--isolate` first, each plugin runs in a worker process of its own: this same
//! binary, started as `greeter-app __worker …` (the first lines of `main`), with greeter
//! calls crossing by the wire encoding in `wire.rs`.
//!
//! Plugin log lines go to stderr, filtered by `RUST_LOG` (default `info`).

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;

use greeter_kind::GreeterKind;
use host::{Host, HostIdentity, PluginReport, ScanMode};
use plugin_isolate::{Isolation, Mode};

mod wire;

fn main() -> ExitCode {
    // ANCHOR: worker
    // Started by the host as a worker for an isolated plugin: serve it, and nothing else.
    if let Some(code) =
        plugin_isolate::worker::serve_if_worker_with(plugin_api::provenance_blob!(), wire::kinds())
    {
        return code;
    }
    // ANCHOR_END: worker
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let isolate = args.first().map(String::as_str) == Some("--isolate");
    if isolate {
        args.remove(0);
    }
    let [dir, greeter, who] = args.as_slice() else {
        return Err("usage: greeter-app [--isolate] PLUGIN_DIR GREETER WHO".into());
    };

    // Plugin logs are `tracing` events in a `plugin{name=…}` span. Install the subscriber
    // before loading: each plugin's log level is fixed when it is loaded.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();

    // Plugins are judged against this application's own provenance (see build.rs), and may
    // only register the kinds it knows.
    let identity = HostIdentity::from_blob(plugin_api::provenance_blob!())?;
    let mut builder = Host::builder(identity).kinds(wire::kinds());
    if isolate {
        // Every plugin in a worker: this very binary (see the first lines of `main`).
        builder = builder.placement(Isolation::new().default_mode(Mode::Process));
    }
    let mut host = builder.build();

    for report in host.scan(&[dir], ScanMode::Load)? {
        print_report(&report);
    }

    let greeter = host.registry().get::<GreeterKind>(greeter)?;
    let greeting = greeter.greet(who.as_str().into()).into_result()?;
    println!("{greeting}");
    Ok(())
}

/// One line per plugin file, then why it was refused or what its build differs in.
fn print_report(report: &PluginReport) {
    let capabilities: Vec<String> = report
        .capabilities
        .iter()
        .map(|c| format!("{}:{}", c.kind, c.name))
        .collect();
    println!(
        "{:<8} {} {} [{}]{} {}",
        report.status.as_str(),
        report.name.as_deref().unwrap_or("?"),
        report.version.as_deref().unwrap_or("?"),
        capabilities.join(","),
        if report.isolated { " [isolated]" } else { "" },
        report.path.display(),
    );
    if let (Some(reason), Some(message)) = (report.reason, &report.message) {
        println!("    error[{reason}]: {message}");
    }
    for warning in report.warnings() {
        println!(
            "    warning[{}]: {}",
            warning.check.reason(),
            warning.message
        );
    }
}
// ANCHOR_END: all
