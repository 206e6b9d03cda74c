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

use greet::Greeter;

use plugin_api::{export_plugin, Initializer, RegisterResult};

// ANCHOR: register
fn register(init: &mut Initializer<'_>) -> RegisterResult {
    let host = format!("{} {}", init.host_name(), init.host_version());
    let name = match init.config().trim() {
        "" => "hello".to_owned(),
        configured => configured.to_owned(),
    };
    log::info!("registering `{name}` for {host}");
    init.add_command(&name, Greeter::new(host))?;
    Ok(())
}

export_plugin!(register);
// ANCHOR_END: register
