//! `hello`: the smallest useful plugin — one command that greets.
//!
//! ```text
//! $ plugin-host run --plugins target/debug hello Ada
//! hello, Ada! (from plugin-host 0.1.0)
//! ```
//!
//! Its configuration, when the host gives one, is the name to register the command under
//! (`--plugin-config hello=greet`), so that several copies can live side by side; such a copy
//! must declare that name in its `[package.metadata.plugin-host]` table (a copy built with
//! it), or the host refuses it (`undeclared-capability`).

mod greet;

pub use greet::{greet, greet_into};

use plugin_api::{
    export_plugin, CallResult, Command, Initializer, RString, RegisterResult, StringAppender,
};

// ANCHOR: register
fn register(init: &mut Initializer<'_>) -> RegisterResult {
    let host = format!("{} {}", init.host_name(), init.host_version());
    let name = match init.config().trim() {
        "" => "hello".to_owned(),
        configured => configured.to_owned(),
    };
    log::info!("registering `{name}` for {host}");
    init.add_command(&name, Greeter { host })?;
    Ok(())
}

export_plugin!(register);
// ANCHOR_END: register

// ANCHOR: greeter
/// Both call forms: `call` returns a new string, `call_into` writes into the caller's buffer
/// (a host that reuses it pays no allocation per call), through a `StringAppender`, whose
/// appends are inlined as a `String`'s are.
struct Greeter {
    host: String,
}

impl Command for Greeter {
    fn run(&self, args: &[&str]) -> CallResult<String> {
        log::debug!("hello called with {} argument(s)", args.len());
        greet(args, &self.host)
    }

    fn run_into(&self, args: &[&str], out: &mut RString) -> CallResult<()> {
        log::debug!("hello called with {} argument(s)", args.len());
        Ok(greet_into(args, &self.host, &mut StringAppender::new(out))?)
    }
}
// ANCHOR_END: greeter
