//! `redact`: a transform that masks secrets in log lines before they leave the machine.
//!
//! It replaces e-mail addresses, IPv4 addresses, bearer tokens and AWS-style access key ids
//! with `[REDACTED:<kind>]`:
//!
//! ```text
//! $ echo 'login bob@example.com from 10.1.2.3 Authorization: Bearer eyJhbGciOi.x' \
//!     | plugin-host transform --plugins target/debug redact
//! login [REDACTED:email] from [REDACTED:ipv4] Authorization: Bearer [REDACTED:token]
//! ```
//!
//! The host configuration string selects the kinds (comma-separated, default all):
//! `--plugin-config redact=email,ipv4`.

mod redactor;

pub use redactor::{Redactor, Secret, UnknownSecret};

use plugin_api::{export_plugin, CallResult, Initializer, RVec, RegisterResult};

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    let redactor = Redactor::from_config(init.config())?;
    log::info!(
        "redact ready for {} (config: {:?})",
        init.host_name(),
        init.config()
    );
    init.add_transform(
        "redact",
        move |input: &[u8], out: &mut RVec<u8>| -> CallResult<()> {
            redactor.redact(input, |s| out.extend_from_copy_slice(s));
            Ok(())
        },
    )?;
    Ok(())
}

export_plugin!(register);
