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
//! Its configuration is a TOML table (`[plugins.redact.config]` in a `plugin-host.toml`, or
//! `--plugin-config redact='…'`), every key optional:
//!
//! ```toml
//! kinds = ["email", "ipv4"]          # the built-in kinds to mask (default: all)
//! patterns = ["TICKET-[0-9]+"]       # extra regular expressions, masked as kind `custom`
//! replacement = "<{kind}>"           # what a secret becomes; `{kind}` is its kind's name
//! ```
//!
//! The older form, kind names separated by commas (`--plugin-config redact=email,ipv4`),
//! still selects kinds.

mod redactor;

pub use redactor::{Redactor, Secret, UnknownSecret, CUSTOM, DEFAULT_REPLACEMENT};

use plugin_api::{export_plugin, CallResult, Initializer, RVec, RegisterResult};
use serde::Deserialize;

// ANCHOR: settings
/// `redact`'s configuration table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The built-in kinds to mask (all when absent or empty).
    pub kinds: Vec<String>,
    /// Extra regular expressions whose matches are masked as kind `custom`.
    pub patterns: Vec<String>,
    /// The replacement template (default `[REDACTED:{kind}]`).
    pub replacement: Option<String>,
}
// ANCHOR_END: settings

impl Settings {
    /// The settings a configuration string gives: a TOML table, or (the older form) kind names
    /// separated by commas. Empty: the defaults.
    pub fn from_config(config: &str) -> Result<Settings, plugin_api::config::ConfigError> {
        match Settings::from_list(config) {
            Some(settings) => Ok(settings),
            None => plugin_api::config::parse(config),
        }
    }

    /// The older form, `email,ipv4`: a string with no `=`, `[` or line break cannot be a TOML
    /// table with keys.
    fn from_list(config: &str) -> Option<Settings> {
        (!config.contains(['=', '[', '\n'])).then(|| Settings {
            kinds: config
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Settings::default()
        })
    }

    /// The redactor these settings describe.
    pub fn redactor(&self) -> Result<Redactor, Box<dyn std::error::Error + Send + Sync>> {
        let kinds = self
            .kinds
            .iter()
            .map(|k| Secret::named(k))
            .collect::<Result<Vec<_>, _>>()?;
        let replacement = self.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);
        Redactor::with_options(&kinds, &self.patterns, replacement).map_err(|e| {
            format!("a pattern in redact's configuration does not compile: {e}").into()
        })
    }
}

// ANCHOR: config_as
fn register(init: &mut Initializer<'_>) -> RegisterResult {
    let settings = match Settings::from_list(init.config()) {
        Some(settings) => settings,
        None => init.config_as::<Settings>()?,
    };
    let redactor = settings.redactor()?;
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
// ANCHOR_END: config_as

export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_toml_or_the_older_list() {
        let s = Settings::from_config("kinds = [\"ipv4\"]\nreplacement = \"#\"\n").unwrap();
        assert_eq!(s.kinds, ["ipv4"]);
        let out = s.redactor().unwrap().redact_to_vec(b"a@b.io 1.2.3.4");
        assert_eq!(out, b"a@b.io #");

        let s = Settings::from_config("email, ipv4").unwrap();
        assert_eq!(s.kinds, ["email", "ipv4"]);
        assert_eq!(Settings::from_config("").unwrap(), Settings::default());

        let e = Settings::from_config("replacment = \"#\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `replacment`"), "{e}");
        let e = Settings::from_config("kinds = [\"phone\"]")
            .unwrap()
            .redactor()
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown secret kind `phone`"), "{e}");
    }
}
