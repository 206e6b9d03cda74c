//! The plugins compiled into `plugin-host` itself. They register through the same
//! `register(initializer, logger)` as a plugin file ([`plugin_api::builtin_plugin!`]), show in
//! `scan` as `builtin`, and a plugin file of the same name replaces one only with
//! `--replace-builtin NAME`.

use plugin_api::{Builtin, CallResult, Initializer, RVec, RegisterResult};

/// `version` (a command: the host's name, version and rustc) and `echo` (a transform: its
/// input unchanged).
// ANCHOR: builtin
pub const BUILTIN: Builtin = plugin_api::builtin_plugin!(register);
// ANCHOR_END: builtin

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    let rustc = host::Provenance::decode(plugin_api::provenance_blob!())
        .map(|p| p.rustc.short())
        .unwrap_or_else(|_| "unknown".to_owned());
    let version = format!(
        "{} {} (rustc {rustc})",
        init.host_name(),
        init.host_version()
    );
    init.add_command("version", move |_: &[&str]| Ok(version.clone()))?;
    init.add_transform(
        "echo",
        |input: &[u8], out: &mut RVec<u8>| -> CallResult<()> {
            out.extend_from_slice(input);
            Ok(())
        },
    )?;
    Ok(())
}
