//! Minisign-compatible detached signatures: `FILE.minisig` beside the plugin file, checked
//! against the trusted public keys (verification by `minisign-verify`).
//!
//! Both signature algorithms minisign writes are accepted: `ED` (the file's BLAKE2b-512 is
//! signed: the default since minisign 0.8) and legacy `Ed` (the file itself is signed). The
//! global signature, over the signature and its trusted comment, is always checked too.

use std::path::{Path, PathBuf};

use minisign_verify::{PublicKey, Signature, StreamVerifier};
use serde::Serialize;

/// The largest `.minisig` file read: minisign's are about 300 bytes (a long trusted comment
/// makes them longer). A larger file is `invalid-signature`, and is not read.
pub const MAX_SIGNATURE_LEN: u64 = 8192;

/// What the host found about a plugin file's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureStatus {
    /// A valid signature by a trusted key.
    Signed,
    /// No `FILE.minisig`.
    Unsigned,
    /// A `FILE.minisig` that is unreadable, malformed, or does not match the file: the file
    /// or its signature changed after signing.
    InvalidSignature,
    /// A well-formed signature by a key that is not trusted (it cannot be checked).
    UntrustedKey,
}

impl SignatureStatus {
    /// The status as shown to users.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Signed => "signed",
            SignatureStatus::Unsigned => "unsigned",
            SignatureStatus::InvalidSignature => "invalid-signature",
            SignatureStatus::UntrustedKey => "untrusted-key",
        }
    }
}

/// Where the signature of `file` is: `FILE.minisig`.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// A public key whose signatures the host trusts.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: PublicKey,
    id: [u8; 8],
    base64: String,
}

/// A trusted key that is not a minisign public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{shown}` is not a minisign public key: expected the base64 line of a `.pub` file \
     (the second line, 56 characters, starting with `RW`)"
)]
pub struct KeyError {
    shown: String,
}

impl TrustedKey {
    /// Parses a key: the base64 line of a minisign `.pub` file, or the whole file's text
    /// (`untrusted comment: …` then the base64 line).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        let error = || KeyError {
            shown: crate::text::bounded(line, 80).into_owned(),
        };
        let key = PublicKey::from_base64(line).map_err(|_| error())?;
        let raw = base64_decode(line).ok_or_else(error)?;
        let id = raw
            .get(2..10)
            .and_then(|id| id.try_into().ok())
            .ok_or_else(error)?;
        Ok(TrustedKey {
            key,
            id,
            base64: line.to_owned(),
        })
    }

    /// The key's id as minisign shows it (hex, as in `minisign public key 353A9B49AE7B477`).
    pub fn id(&self) -> String {
        key_id_hex(&self.id)
    }

    /// The base64 line.
    pub fn base64(&self) -> &str {
        &self.base64
    }
}

fn key_id_hex(id: &[u8; 8]) -> String {
    format!("{:X}", u64::from_le_bytes(*id))
}

/// What the signature beside a file says before the file is read.
pub(crate) enum Found<'k> {
    Unsigned,
    Invalid(String),
    Untrusted(String),
    /// A well-formed signature by a key id that these trusted keys have (one, unless two
    /// trusted keys share an id): the file must be read to check it against each.
    Check(Vec<&'k TrustedKey>, Signature),
}

/// Reads `FILE.minisig` (bounded) and finds the trusted key it names.
pub(crate) fn find<'k>(file: &Path, keys: &'k [TrustedKey]) -> Found<'k> {
    let sig_path = signature_path(file);
    let text = match read_bounded(&sig_path) {
        Ok(Some(text)) => text,
        Ok(None) => return Found::Unsigned,
        Err(detail) => return Found::Invalid(detail),
    };
    let signature = match Signature::decode(&text) {
        Ok(s) => s,
        Err(e) => return Found::Invalid(format!("it is not a minisign signature ({e})")),
    };
    // `minisign-verify` does not show the key id a signature names: decode it here.
    let id: Option<[u8; 8]> = text
        .lines()
        .nth(1)
        .and_then(|l| base64_decode(l.trim()))
        .and_then(|raw| raw.get(2..10)?.try_into().ok());
    let Some(id) = id else {
        return Found::Invalid("it is not a minisign signature".into());
    };
    // A key id is 8 bytes any key's owner chooses (it is not derived from the key): a
    // trusted key listed first with the same id must not hide the one that signed.
    let matching: Vec<&TrustedKey> = keys.iter().filter(|k| k.id == id).collect();
    if matching.is_empty() {
        Found::Untrusted(key_id_hex(&id))
    } else {
        Found::Check(matching, signature)
    }
}

/// The text of the signature file, `None` when there is none. Read as every small file the
/// host is pointed at is ([`crate::small_file`]): a regular file (a link to one is followed),
/// never blocking, at most [`MAX_SIGNATURE_LEN`] bytes.
fn read_bounded(path: &Path) -> Result<Option<String>, String> {
    use crate::small_file::{Links, SmallFile, SmallFileError};
    const SIGNATURE_FILE: SmallFile = SmallFile {
        what: "signature",
        limit: MAX_SIGNATURE_LEN,
        links: Links::Follow,
    };
    match SIGNATURE_FILE.read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(SmallFileError::Io { source, .. }) => Err(format!("it cannot be read ({source})")),
        Err(SmallFileError::NotRegular { kind, .. }) => {
            Err(format!("it is {kind}, not a regular file"))
        }
        Err(SmallFileError::TooLarge { .. }) => Err(format!(
            "it is more than {MAX_SIGNATURE_LEN} bytes, not a minisign signature"
        )),
        Err(SmallFileError::NotText { .. }) => {
            Err("it is not text, so not a minisign signature".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Checks a signature against the file's bytes as they are read, once, for every trusted key
/// with the signature's key id.
pub(crate) enum Checker<'a> {
    /// `ED`: BLAKE2b-512 of the file, streamed (once per key).
    Prehashed(Vec<StreamVerifier<'a>>),
    /// Legacy `Ed`: the whole file is signed, so it is kept.
    Legacy(Vec<&'a TrustedKey>, &'a Signature, Vec<u8>),
}

/// The largest file a legacy signature is checked over: the whole file is kept in memory
/// to check one. Prehashed signatures (minisign's default) stream any size.
pub(crate) const MAX_LEGACY_SIGNED: u64 = 64 << 20;

impl<'a> Checker<'a> {
    /// A checker for a file of `len` bytes; why not, for a legacy signature over more than
    /// [`MAX_LEGACY_SIGNED`] bytes.
    pub(crate) fn new(
        keys: &[&'a TrustedKey],
        signature: &'a Signature,
        len: u64,
    ) -> Result<Self, String> {
        let streams: Result<Vec<_>, _> = keys
            .iter()
            .map(|k| k.key.verify_stream(signature))
            .collect();
        match streams {
            Ok(streams) => Ok(Checker::Prehashed(streams)),
            Err(_) if len > MAX_LEGACY_SIGNED => Err(format!(
                "it is a legacy signature (not prehashed) over {len} bytes, more than the \
                 {MAX_LEGACY_SIGNED} bytes the host keeps in memory to check one; sign the file \
                 with prehashing, minisign's default"
            )),
            Err(_) => Ok(Checker::Legacy(
                keys.to_vec(),
                signature,
                Vec::with_capacity(len as usize),
            )),
        }
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        match self {
            Checker::Prehashed(streams) => streams.iter_mut().for_each(|s| s.update(chunk)),
            Checker::Legacy(_, _, data) => data.extend_from_slice(chunk),
        }
    }

    /// Whether the signature (and its global signature) is valid for what was read, by one
    /// of the keys.
    pub(crate) fn finish(self) -> bool {
        match self {
            Checker::Prehashed(streams) => streams.into_iter().any(|mut s| s.finalize().is_ok()),
            Checker::Legacy(keys, signature, data) => keys
                .iter()
                .any(|k| k.key.verify(&data, signature, true).is_ok()),
        }
    }
}

/// Standard base64 (with padding, as minisign writes it); `None` if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, quad) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made with the minisign tool (`minisign -G -W`), and its signatures of the
    /// bytes `plugin bytes\n` (`minisign -S`, and legacy `minisign -S -l`).
    const PUB: &str = "RWR3tOeatKlTAwDofUpgGJwmOZqMoSUiNc17fIqXjMpKqfxAbpUUahAB";
    const SIG: &str = "untrusted comment: signature from minisign secret key
RUR3tOeatKlTA9/h37v72nb8DC6iHI8GO8ggyAYny2A4kncgpZoQxmjUZkDLsOpc8HOZft+hcp0WPUaOGz+8MtI5Z3Tegl4pSgE=
trusted comment: trusted comment for the unit test
2lpqYfFmQ3Yq4Da+rcmyH/LFNZcuD/YOF6/o0NCQQkvm2Jo6lpkwrmAKnNXdv56R22MkHN2Z/3WdunhjFjWvAg==
";
    const LEGACY: &str = "untrusted comment: signature from minisign secret key
RWR3tOeatKlTA283XfSkJVC4OHFafWKrh4sqksq5mnZOBCqmzNt8AtGLLsqWQ4TMA9F13cM2nSMlFOWgb6d1dYeWCWYhgIMe7gM=
trusted comment: legacy
jghuqLNgSd2Z0xfF8ueCOmgavtLHAf9waRJJOZOZjtRkgYR6UhNCf9phbvro70una2NlwvQ9oyqmGVxTILYIBw==
";

    /// `find`, then the checker over `data` in two chunks.
    fn check(file: &Path, keys: &[TrustedKey], data: &[u8]) -> Result<bool, String> {
        match find(file, keys) {
            Found::Check(matching, signature) => {
                let mut checker = Checker::new(&matching, &signature, data.len() as u64)?;
                let (a, b) = data.split_at(data.len() / 2);
                checker.update(a);
                checker.update(b);
                Ok(checker.finish())
            }
            Found::Unsigned => Err("unsigned".into()),
            Found::Invalid(d) => Err(format!("invalid: {d}")),
            Found::Untrusted(id) => Err(format!("untrusted {id}")),
        }
    }

    #[test]
    fn minisign_signatures_prehashed_and_legacy_verify_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        let keys = [TrustedKey::parse(PUB).unwrap()];
        for sig in [SIG, LEGACY] {
            std::fs::write(signature_path(&file), sig).unwrap();
            assert_eq!(check(&file, &keys, b"plugin bytes\n"), Ok(true));
            assert_eq!(check(&file, &keys, b"plugin bytes!"), Ok(false));
            // A changed trusted comment breaks the global signature.
            let forged = sig.replace("trusted comment: ", "trusted comment: x");
            std::fs::write(signature_path(&file), forged).unwrap();
            assert_eq!(check(&file, &keys, b"plugin bytes\n"), Ok(false));
        }
        // Another key: untrusted, named by the signature's key id.
        let other = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLXn9MVMmtb";
        let other = [TrustedKey::parse(other).unwrap()];
        std::fs::write(signature_path(&file), SIG).unwrap();
        assert_eq!(
            check(&file, &other, b"plugin bytes\n"),
            Err("untrusted 353A9B49AE7B477".into())
        );
        assert_eq!(
            check(&file, &[], b""),
            Err("untrusted 353A9B49AE7B477".into())
        );
    }

    /// Standard base64 with padding (the inverse of `base64_decode`).
    fn base64_encode(bytes: &[u8]) -> String {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut n = [0u8; 3];
            n[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from_be_bytes([0, n[0], n[1], n[2]]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn every_trusted_key_with_the_signatures_key_id_is_tried() {
        // A second key forced to the id of the key that signed: "Ed", the same 8-byte id,
        // another 32-byte Ed25519 key (the other test key's).
        let signer = base64_decode(PUB).unwrap();
        let other =
            base64_decode("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLXn9MVMmtb").unwrap();
        let mut colliding = signer[..10].to_vec();
        colliding.extend_from_slice(&other[10..]);
        let colliding = TrustedKey::parse(&base64_encode(&colliding)).unwrap();
        let signer = TrustedKey::parse(PUB).unwrap();
        assert_eq!(colliding.id(), signer.id());
        assert_ne!(colliding.base64(), signer.base64());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        for sig in [SIG, LEGACY] {
            std::fs::write(signature_path(&file), sig).unwrap();
            // The colliding key listed first: the signature is still valid.
            let keys = [colliding.clone(), signer.clone()];
            assert_eq!(check(&file, &keys, b"plugin bytes\n"), Ok(true));
            assert_eq!(check(&file, &keys, b"plugin bytes!"), Ok(false));
            // Only the colliding key: invalid, as before.
            let keys = [colliding.clone()];
            assert_eq!(check(&file, &keys, b"plugin bytes\n"), Ok(false));
        }
    }

    #[test]
    fn base64_decodes_like_the_standard() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        for bad in ["Zg=", "Z===", "Zg==Zm9v", "Zm9*"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_parse_from_the_line_or_the_pub_file() {
        let key = TrustedKey::parse(PUB).unwrap();
        let file = format!("untrusted comment: minisign public key 353A9B49AE7B477\n{PUB}\n");
        let from_file = TrustedKey::parse(&file).unwrap();
        assert_eq!(key.id(), "353A9B49AE7B477");
        assert_eq!(from_file.id(), key.id());
        assert_eq!(from_file.base64(), PUB);
        for bad in ["", "RWQ", "not base64 at all", &PUB[1..]] {
            let err = TrustedKey::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a minisign public key"), "{err}");
        }
    }

    #[test]
    fn signature_files_are_bounded_and_checked_for_shape() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"plugin bytes\n").unwrap();
        let keys = [TrustedKey::parse(PUB).unwrap()];
        assert!(matches!(find(&file, &keys), Found::Unsigned));
        let sig = signature_path(&file);
        assert_eq!(sig, dir.path().join("libx.so.minisig"));
        let cases: [(&[u8], &str); 4] = [
            (&[b'A'; MAX_SIGNATURE_LEN as usize + 1], "bytes"),
            (b"garbage", "not a minisign signature"),
            (&[0xff, 0xfe, 0], "not text"),
            (
                b"untrusted comment: x\nRWQ\ntrusted comment: y\nAAAA\n",
                "not a minisign",
            ),
        ];
        for (bytes, needle) in cases {
            std::fs::write(&sig, bytes).unwrap();
            match find(&file, &keys) {
                Found::Invalid(detail) => assert!(detail.contains(needle), "{detail}"),
                _ => panic!("{needle}: not invalid"),
            }
        }
        std::fs::remove_file(&sig).unwrap();
        std::fs::create_dir(&sig).unwrap();
        assert!(matches!(find(&file, &keys), Found::Invalid(_)));
    }
}
