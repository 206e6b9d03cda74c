//! Reason codes: the stable, kebab-case names of every way a plugin can be refused or fail.
//!
//! They appear in `--json` output, beside every human message, and in the book's table
//! (`docs/src/reference/reason-codes.md`), which a test keeps equal to [`ReasonCode::ALL`].

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! reason_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal;)*) => {
        /// Why a plugin was not loaded (or was loaded, then failed).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ReasonCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];

            /// The stable kebab-case code, e.g. `rustc-mismatch`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ReasonCode::$variant => $code,)*
                }
            }
        }
    };
}

reason_codes! {
    /// The file is not a shared library this host can read (empty, garbage, truncated, an
    /// executable, a special file, an unreadable file).
    NotALibrary = "not-a-library";
    /// A shared library without a provenance section: not built with `plugin-api`.
    NoProvenance = "no-provenance";
    /// The provenance section exists but is not a valid record.
    MalformedProvenance = "malformed-provenance";
    /// Reading or judging the file panicked: a bug in plugin-host that this file sets off.
    /// The file is refused (none of its code ran), and a scan or an index goes on with the
    /// next one.
    VerificationPanicked = "verification-panicked";
    /// Built for another target triple.
    TargetMismatch = "target-mismatch";
    /// Built by another rustc (release or commit), where the policy cares.
    RustcMismatch = "rustc-mismatch";
    /// Built with another panic strategy, where the policy cares.
    PanicStrategyMismatch = "panic-strategy-mismatch";
    /// Built against a `plugin-api` this host cannot serve.
    ApiIncompatible = "api-incompatible";
    /// Built with an `abi_stable` of another series.
    AbiStableMismatch = "abi-stable-mismatch";
    /// Links another version of a crate the host also links, where the policy cares.
    DependencyMismatch = "dependency-mismatch";
    /// Built with another profile (opt-level, debug assertions), where the policy cares.
    ProfileMismatch = "profile-mismatch";
    /// `abi_stable`'s layout check of the root module or a capability failed after loading.
    LayoutMismatch = "layout-mismatch";
    /// The dynamic loader refused the library (missing symbol, missing dependency, …).
    LoadFailed = "load-failed";
    /// The plugin's `register` returned an error.
    RegisterFailed = "register-failed";
    /// The plugin's `register` panicked (caught on the plugin side).
    RegisterPanicked = "register-panicked";
    /// A plugin of the same name is already loaded, is built into the host, or comes earlier
    /// in the search path (this file is then `shadowed`).
    DuplicatePlugin = "duplicate-plugin";
    /// A file configured for one plugin (`[plugins.NAME] path`) carries another plugin's name.
    NameMismatch = "name-mismatch";
    /// The plugin registered a capability name another plugin already has (or registered
    /// one name twice).
    CapabilityConflict = "capability-conflict";
    /// The plugin registered a capability whose name is empty, not UTF-8, not printable or
    /// too long, or more capabilities than a plugin may have.
    InvalidCapability = "invalid-capability";
    /// The plugin is in the lock file, but its file's sha256, size or provenance differ.
    ChecksumMismatch = "checksum-mismatch";
    /// The plugin is not in the lock file, and the host only loads locked plugins.
    NotLocked = "not-locked";
    /// The plugin has no signature (`FILE.minisig`), and signatures are required.
    Unsigned = "unsigned";
    /// The plugin's signature is malformed or does not match the file (refused unless
    /// signatures are ignored).
    InvalidSignature = "invalid-signature";
    /// The plugin is signed by a key that is not trusted, and signatures are required.
    UntrustedKey = "untrusted-key";
    /// The plugin declared its capabilities (`[package.metadata.plugin-host]`) and then
    /// registered one it did not declare.
    UndeclaredCapability = "undeclared-capability";
    /// An isolated plugin did not finish in time: a call past its deadline
    /// (`--call-timeout`), or loading and registering past the start timeout. Its worker
    /// was killed.
    PluginTimeout = "plugin-timeout";
    /// An isolated plugin's worker process died (a signal such as `SIGSEGV` or `SIGABRT`,
    /// or an exit) while loading or during a call; the message gives the signal or status
    /// and the tail of its stderr.
    PluginCrashed = "plugin-crashed";
    /// An isolated plugin's worker did not answer the handshake in time, or answered it
    /// wrongly (another cookie, no common protocol version, garbage frames).
    HandshakeFailed = "handshake-failed";
    /// An isolated plugin's worker broke the protocol after the handshake (a garbage frame,
    /// an unexpected message): it was killed.
    ProtocolError = "protocol-error";
    /// A reloaded isolated plugin ([`crate::Host::reload`]) no longer registers a capability
    /// it registered when it was loaded (callers may hold handles to it): the reload was
    /// refused and the old worker serves on.
    CapabilitiesChanged = "capabilities-changed";
}

impl ReasonCode {
    /// Parses a kebab-case code.
    pub fn parse(code: &str) -> Option<ReasonCode> {
        Self::ALL.iter().copied().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_and_parse_back() {
        for (i, code) in ReasonCode::ALL.iter().enumerate() {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
            assert_eq!(ReasonCode::parse(s), Some(*code));
            assert!(!ReasonCode::ALL[..i].contains(code));
        }
    }
}
