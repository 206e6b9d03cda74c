//! Trust: what the host knows about a plugin file's bytes before it judges the provenance
//! they declare — the lock file's hashes and minisign-compatible signatures.
//!
//! It runs between read and judge: discover → read → **trust** → judge → load → register.
//!
//! - [`hash`]: one pass over the open file for every digest the step needs (the lock's
//!   sha256, a signature's BLAKE2b-512).
//! - [`lock`]: the lock file (`plugin-host.lock`): its format, reading, atomic writing.
//! - [`signature`]: trusted keys, `FILE.minisig` reading, the signature status.
//! - `step`: the trust step itself, and the [`crate::Host`] builder methods that configure it.
//!
//! What applies when:
//!
//! | situation | outcome |
//! |---|---|
//! | the plugin's name is in the lock, its sha256, size or provenance digest differ | refused `checksum-mismatch` |
//! | the name is not in the lock and the host is `locked` | refused `not-locked` |
//! | signature `invalid-signature` (mode `warn` or `require`) | refused `invalid-signature` |
//! | `unsigned` / `untrusted-key` under `require` | refused `unsigned` / `untrusted-key` |
//! | `unsigned` / `untrusted-key` under `warn` | loaded, with a warning |
//! | mode `ignore` | the signature is not looked at (status `null`) |
//!
//! When a digest is needed and plugins are loaded from a sealed copy (the default on Linux),
//! the step makes the sealed copy of the **whole** file first and hashes *that*: what is
//! hashed or signature-checked is then byte for byte what the loader maps, and no write to
//! the plugin file after that moment can matter. Without a lock and with signatures
//! ignored, the step reads nothing at all.

pub mod hash;
pub mod lock;
pub mod signature;
mod step;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use hash::FileDigest;
pub use lock::{Lock, LockEntry, LockError, LOCK_FILE_NAME, LOCK_FORMAT_VERSION, MAX_LOCK_LEN};
pub use signature::{signature_path, KeyError, SignatureStatus, TrustedKey, MAX_SIGNATURE_LEN};
pub use step::MAX_HASHED;

use crate::reason::ReasonCode;

/// A trust finding that did not refuse the plugin (signature mode `warn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustWarning {
    /// What it would have been refused as under `require`.
    pub reason: ReasonCode,
    /// What was found and what to do about it.
    pub message: String,
}

/// How the host checks plugin files' bytes: set through [`crate::HostBuilder::lock`],
/// [`crate::HostBuilder::trusted_key`], [`crate::HostBuilder::signatures`] and
/// [`crate::PluginSettings::signatures`].
#[derive(Debug, Default)]
pub(crate) struct Trust {
    /// The lock in force, and whether plugins it does not list are refused.
    pub(crate) lock: Option<(Lock, bool)>,
    pub(crate) keys: Vec<TrustedKey>,
    pub(crate) mode: Option<SignatureMode>,
    pub(crate) per_plugin: HashMap<String, SignatureMode>,
    /// Hash every file even when no lock entry asks for it (`plugin-host lock`).
    pub(crate) record_digests: bool,
}

impl Trust {
    /// The host's own signature mode, for every plugin without one of its own: as set, else
    /// `warn` when any key is trusted, else `ignore`.
    pub(crate) fn global_mode(&self) -> SignatureMode {
        self.mode.unwrap_or(if self.keys.is_empty() {
            SignatureMode::Ignore
        } else {
            SignatureMode::Warn
        })
    }

    /// The signature mode for plugin `name`: its own when set, else the host's.
    ///
    /// A mode of its own that is looser than the host's is an exemption, and an exemption
    /// follows a file, not the name a file declares for itself: it applies only when the file
    /// is `bound` to the name (it is the plugin's configured path). Otherwise the host's mode
    /// applies, and the exemption that was not applied comes back too, to say why.
    pub(crate) fn mode_for(
        &self,
        name: &str,
        bound: bool,
    ) -> (SignatureMode, Option<SignatureMode>) {
        let global = self.global_mode();
        match self.per_plugin.get(name).copied() {
            Some(own) if own >= global || bound => (own, None),
            Some(own) => (global, Some(own)),
            None => (global, None),
        }
    }
}

/// What the host does about a plugin file's detached signature (`FILE.minisig`).
///
/// Unless configured: `warn` when any trusted key is configured, else `ignore`. Under `warn`
/// and `require` an invalid signature always refuses the file (the file or its signature was
/// changed after signing); `unsigned` and `untrusted-key` refuse only under `require`.
///
/// Modes are ordered from the loosest to the strictest (`Ignore < Warn < Require`): what a
/// setting that may only tighten another is compared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureMode {
    /// Signatures are not looked at (the status is not known: `null` in JSON, `-` in a scan).
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
