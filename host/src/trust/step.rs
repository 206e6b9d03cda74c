//! The trust step, between read and judge (configured with [`crate::HostBuilder::lock`],
//! [`crate::HostBuilder::trusted_key`], [`crate::HostBuilder::signatures`]).

use std::fs::{File, Metadata};
use std::path::Path;

use plugin_api::provenance::ProvenanceRef;
use sha2::{Digest, Sha256};

use super::hash::{provenance_digest, read_once, FileDigest};
use super::signature::{self, Checker, Found, SignatureStatus};
use super::{SignatureMode, Trust, TrustWarning};
use crate::error::PluginError;
use crate::map::LoadFrom;
use crate::reason::ReasonCode;
use crate::report::PluginReport;

/// The largest plugin file the trust step copies and hashes whole (a lock's digest, a
/// signature's check): 1 GiB, as a registry's library. Debug builds of plugins are tens of
/// megabytes.
pub const MAX_HASHED: u64 = 1 << 30;

impl Trust {
    /// The trust step for a file whose provenance was read: fills `report.signature`,
    /// `report.digest` and `report.trust_warnings`; an error refuses the file.
    ///
    /// `bound`: the file is the one configured for its plugin's name (see
    /// [`Trust::mode_for`]).
    ///
    /// Returns the sealed copy of the whole file when one was made to be hashed (the
    /// loader then maps that very copy). When the lock or a signature vouches for the file,
    /// the copy is made whatever `load_from` says: they vouch for the bytes hashed, so those
    /// bytes are what runs — mapping the file itself would let a write after the hash run
    /// unchecked code.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &self,
        load_from: LoadFrom,
        bound: bool,
        path: &Path,
        file: &File,
        meta: &Metadata,
        provenance: &ProvenanceRef<'_>,
        report: &mut PluginReport,
    ) -> Result<Option<File>, PluginError> {
        let name = provenance.name.as_str();
        let refuse = |reason: ReasonCode, message: String| PluginError::Trust {
            path: path.to_owned(),
            reason,
            message,
        };
        let entry = self.lock.as_ref().and_then(|(lock, _)| lock.get(name));
        if let Some((lock, true)) = &self.lock {
            if entry.is_none() {
                return Err(refuse(
                    ReasonCode::NotLocked,
                    format!(
                        "plugin `{name}` is not in the lock file {}, and only locked plugins \
                         are loaded (--locked); if it belongs here, run `plugin-host lock` \
                         to add it, otherwise remove it from the plugin directory",
                        lock.path().display()
                    ),
                ));
            }
        }
        // A file of another size than the locked one is not the locked file: told before
        // anything of it is copied or hashed (a sparse file of a terabyte under a locked
        // name would take the hash minutes).
        if let Some(entry) = entry.filter(|entry| entry.size != meta.len()) {
            return Err(refuse(
                ReasonCode::ChecksumMismatch,
                format!(
                    "plugin `{name}` changed since it was locked: it is {} bytes, but the \
                     lock file {} expects {} bytes (sha256 {}); if the change is intended, \
                     run `plugin-host lock` again, otherwise reinstall the locked file",
                    meta.len(),
                    self.lock
                        .as_ref()
                        .map(|(l, _)| l.path().display().to_string())
                        .unwrap_or_default(),
                    entry.size,
                    entry.sha256
                ),
            ));
        }
        let (mode, unapplied) = self.mode_for(name, bound);
        let found = (mode != SignatureMode::Ignore).then(|| signature::find(path, &self.keys));
        let hash = entry.is_some() || self.record_digests;
        let checks = matches!(found, Some(Found::Check(..)));
        if (hash || checks) && meta.len() > MAX_HASHED {
            // More than any plugin: not copied, hashed or kept to be checked.
            let (reason, what) = match (entry, checks) {
                (Some(_), _) => (ReasonCode::ChecksumMismatch, "hashed for the lock file"),
                (None, true) => (
                    ReasonCode::InvalidSignature,
                    "checked against its signature",
                ),
                (None, false) => (ReasonCode::NotALibrary, "hashed"),
            };
            return Err(refuse(
                reason,
                format!(
                    "plugin `{name}`'s file is {} bytes, more than the {MAX_HASHED} bytes (1 GiB) \
                     a plugin file may be to be {what}; no plugin is that large, so this \
                     file is not one",
                    meta.len(),
                ),
            ));
        }
        let (mut checker, unchecked) = match &found {
            Some(Found::Check(keys, signature)) => {
                match Checker::new(keys, signature, meta.len()) {
                    Ok(checker) => (Some(checker), None),
                    Err(why) => (None, Some(why)),
                }
            }
            _ => (None, None),
        };
        let mut sealed = None;
        if hash || checker.is_some() {
            let len = meta.len();
            let vouched = entry.is_some() || checker.is_some();
            sealed = whole_sealed_copy(
                matches!(load_from, LoadFrom::SealedCopy | LoadFrom::KeptCopy) || vouched,
                name,
                file,
                len,
                path,
            )?;
            let mut sha = hash.then(Sha256::new);
            read_once(sealed.as_ref().unwrap_or(file), len, &mut |chunk| {
                if let Some(sha) = &mut sha {
                    sha.update(chunk);
                }
                if let Some(checker) = &mut checker {
                    checker.update(chunk);
                }
            })
            .map_err(|source| crate::read::ReadError::Io {
                path: path.to_owned(),
                source,
            })?;
            report.digest = sha.map(|sha| FileDigest {
                sha256: sha.finalize().into(),
                size: len,
                // The digest of the owned record's JSON, as `plugin-host lock` writes it.
                provenance: provenance_digest(&provenance.to_owned()),
            });
        }
        if let (Some(entry), Some(digest)) = (entry, &report.digest) {
            if !entry.matches(digest) {
                let lock = self
                    .lock
                    .as_ref()
                    .map(|(l, _)| l.path().display().to_string());
                let what = if entry.sha256 != digest.sha256_hex() || entry.size != digest.size {
                    format!(
                        "its sha256 is {} ({} bytes), but the lock file {} expects {} ({} \
                         bytes)",
                        digest.sha256_hex(),
                        digest.size,
                        lock.unwrap_or_default(),
                        entry.sha256,
                        entry.size
                    )
                } else {
                    format!(
                        "its provenance digest is {}, but the lock file {} expects {}",
                        digest.provenance,
                        lock.unwrap_or_default(),
                        entry.provenance
                    )
                };
                return Err(refuse(
                    ReasonCode::ChecksumMismatch,
                    format!(
                        "plugin `{name}` changed since it was locked: {what}; if the change is \
                         intended, run `plugin-host lock` again, otherwise reinstall the \
                         locked file"
                    ),
                ));
            }
        }
        let valid = checker.map(Checker::finish);
        let Some(found) = found else {
            return Ok(sealed);
        };
        let found = match unchecked {
            Some(why) => Found::Invalid(why),
            None => found,
        };
        let sig = signature::signature_path(path);
        let sig = sig.display();
        let (status, reason, message) = match found {
            Found::Check(..) if valid == Some(true) => {
                report.signature = Some(SignatureStatus::Signed);
                return Ok(sealed);
            }
            Found::Check(keys, _) => (
                SignatureStatus::InvalidSignature,
                ReasonCode::InvalidSignature,
                format!(
                    "its signature {sig} (key {}{}) does not match the file: the file or its \
                     signature was changed after signing; reinstall the plugin from its \
                     author, or sign the file again if you rebuilt it (`minisign -Sm FILE` or \
                     `plugin-host sign FILE`)",
                    keys[0].id(),
                    match keys.len() {
                        1 => String::new(),
                        n => format!(", tried with each of the {n} trusted keys of that id"),
                    }
                ),
            ),
            Found::Invalid(detail) => (
                SignatureStatus::InvalidSignature,
                ReasonCode::InvalidSignature,
                format!(
                    "its signature {sig} is invalid: {detail}; sign the file again \
                     (`minisign -Sm FILE` or `plugin-host sign FILE`) or remove the bad \
                     signature file"
                ),
            ),
            Found::Unsigned => (
                SignatureStatus::Unsigned,
                ReasonCode::Unsigned,
                format!(
                    "plugin `{name}` is not signed (no {sig}); sign it with a trusted key \
                     (`minisign -Sm FILE` or `plugin-host sign FILE`)"
                ),
            ),
            Found::Untrusted(id) => (
                SignatureStatus::UntrustedKey,
                ReasonCode::UntrustedKey,
                format!(
                    "plugin `{name}` is signed by key {id}, which is not trusted; if you \
                     trust its signer, add the signer's public key (the base64 line of the \
                     .pub file) to `[trust] keys` or `--trusted-key`, otherwise sign it with \
                     a trusted key"
                ),
            ),
        };
        report.signature = Some(status);
        if mode == SignatureMode::Require || status == SignatureStatus::InvalidSignature {
            let message = match unapplied {
                Some(own) if mode == SignatureMode::Require => format!(
                    "{message} (signatures are required; the plugin's own `signatures = \"{own}\"` \
                     applies only to the file at its configured `path`, and {} is not that \
                     file: if it is the file you mean to exempt, set `path` to it in the \
                     `[plugins.{name}]` table, otherwise sign it or remove it)",
                    path.display()
                ),
                None if mode == SignatureMode::Require => {
                    format!("{message} (signatures are required)")
                }
                _ => message,
            };
            return Err(refuse(reason, message));
        }
        report.trust_warnings.push(TrustWarning {
            reason,
            message: format!("{message} (not refused: signatures = warn)"),
        });
        Ok(sealed)
    }
}

/// A sealed copy of the whole file, when the loader maps sealed copies (Linux).
#[cfg(target_os = "linux")]
fn whole_sealed_copy(
    wanted: bool,
    name: &str,
    file: &File,
    len: u64,
    path: &Path,
) -> Result<Option<File>, PluginError> {
    if !wanted {
        return Ok(None);
    }
    crate::seal::sealed_copy(name, file, len, &[(0, len)])
        .map(Some)
        .map_err(|e| match crate::error::out_of_descriptors(&e) {
            Some(detail) => PluginError::Resources {
                path: path.to_owned(),
                detail,
            },
            None => PluginError::Read(crate::read::ReadError::Io {
                path: path.to_owned(),
                source: e,
            }),
        })
}

#[cfg(not(target_os = "linux"))]
fn whole_sealed_copy(
    _wanted: bool,
    _name: &str,
    _file: &File,
    _len: u64,
    _path: &Path,
) -> Result<Option<File>, PluginError> {
    Ok(None)
}
