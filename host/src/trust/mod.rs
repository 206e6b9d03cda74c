//! Trust: what the host knows about a plugin file's bytes before it judges the provenance
//! they declare — the lock file's hashes and minisign-compatible signatures.
//!
//! It runs between read and judge: discover → read → **trust** → judge → load → register.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What the host does about a plugin file's detached signature (`FILE.minisig`).
///
/// Unless configured: `warn` when any trusted key is configured, else `ignore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureMode {
    /// Signatures are not checked (a scan still shows what it found).
    Ignore,
    /// A missing, invalid or untrusted signature is a warning; the plugin still loads.
    Warn,
    /// Only a file with a valid signature by a trusted key is loaded.
    Require,
}

impl SignatureMode {
    /// Every mode, as written in configuration.
    pub const ALL: &'static [SignatureMode] = &[
        SignatureMode::Ignore,
        SignatureMode::Warn,
        SignatureMode::Require,
    ];

    /// The mode as written in configuration: `ignore`, `warn` or `require`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Ignore => "ignore",
            SignatureMode::Warn => "warn",
            SignatureMode::Require => "require",
        }
    }
}

impl fmt::Display for SignatureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature mode that is not `ignore`, `warn` or `require`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature mode `{0}`; expected one of: ignore, warn, require")]
pub struct UnknownSignatureMode(pub String);

impl FromStr for SignatureMode {
    type Err = UnknownSignatureMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignatureMode::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownSignatureMode(s.to_owned()))
    }
}
