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
//! calls crossing by the wire encoding below.
//!
//! Plugin log lines go to stderr, filtered by `RUST_LOG` (default `info`).

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use greeter_kind::{FfiGreeter, FfiGreeter_TO, GreeterKind};
use host::config::Isolation;
use host::isolate::wire::{Remote, WireEncoding};
use host::{Host, HostIdentity, Kinds, PluginReport, ScanMode};
use plugin_api::{CallError, CallErrorKind};

/// The kinds plugins may register here: `greeter` alone (not the demo kinds), with its wire
/// encoding so that greeters can run isolated. The host and its workers use the same.
fn kinds() -> Kinds {
    Kinds::new().with_wire::<GreeterWire>()
}

/// How a greeter call crosses to an isolated plugin's worker and back: the name to greet as
/// UTF-8 bytes, the greeting back the same way. (Any encoding will do; the host carries the
/// bytes, and handles deadlines, crashes and restarts.)
struct GreeterWire;

impl WireEncoding for GreeterWire {
    type Kind = GreeterKind;

    /// In the application: the greeter callers get, which forwards to the worker.
    fn proxy(remote: Remote) -> FfiGreeter_TO<'static, RBox<()>> {
        FfiGreeter_TO::from_value(RemoteGreeter(remote), TD_Opaque)
    }

    /// In the worker: one call to the plugin's greeter.
    fn serve(
        greeter: &FfiGreeter_TO<'static, RBox<()>>,
        request: &[u8],
        reply: &mut RVec<u8>,
    ) -> Result<(), CallError> {
        let who = std::str::from_utf8(request).map_err(|_| CallError {
            kind: CallErrorKind::Failed,
            message: "the name to greet is not UTF-8".into(),
        })?;
        let greeting = greeter.greet(who.into()).into_result()?;
        reply.extend_from_copy_slice(greeting.as_bytes());
        Ok(())
    }
}

/// A greeter in a worker process, as the application sees it.
struct RemoteGreeter(Remote);

impl FfiGreeter for RemoteGreeter {
    fn greet(&self, who: RStr<'_>) -> RResult<RString, CallError> {
        // The reply is the worker's bytes, untrusted: decoded in `call_with`, which turns a
        // panicking decoder into an error (and this one cannot fail: bad UTF-8 is replaced).
        self.0
            .call_with(who.as_str().as_bytes(), |reply| {
                Ok(RString::from(String::from_utf8_lossy(reply).into_owned()))
            })
            .into()
    }
}

fn main() -> ExitCode {
    // Started by the host as a worker for an isolated plugin: serve it, and nothing else.
    if let Some(code) =
        host::isolate::worker::serve_if_worker_with(plugin_api::provenance_blob!(), kinds())
    {
        return code;
    }
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
    let mut host = Host::new(identity).with_kinds(kinds());
    if isolate {
        host = host.with_default_isolation(Isolation::Process);
    }

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
