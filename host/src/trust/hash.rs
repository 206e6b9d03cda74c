//! Hashing a plugin file: one positioned pass over an open file feeds every digest the trust
//! step needs (the lock's sha256, a signature's BLAKE2b-512), so a file is read once however
//! many checks apply.

use std::fmt::Write as _;
use std::fs::File;
use std::io;

use plugin_api::provenance::Provenance;
use sha2::{Digest, Sha256};

/// Bytes read per positioned read.
const CHUNK: usize = 1 << 20;

/// What the lock file pins about one plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// sha256 of the whole file.
    pub sha256: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
    /// `sha256:` and the hex sha256 of its provenance record's canonical JSON (see
    /// [`provenance_digest`]).
    pub provenance: String,
}

impl FileDigest {
    /// The file's sha256 in lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `sha256:HEX` of the provenance record's canonical JSON: compact `serde_json`, fields in
/// the record's declared order (maps in it are sorted), so equal records digest equal.
pub fn provenance_digest(provenance: &Provenance) -> String {
    // Serializing plain data to a Vec cannot fail; an empty record digests if it ever did.
    let json = serde_json::to_vec(provenance).unwrap_or_default();
    format!("sha256:{}", hex(&Sha256::digest(&json)))
}

/// The sha256 of the first `len` bytes of `file` (positioned reads: the file position is
/// not used). An error if the file is shorter than `len`.
pub fn sha256_file(file: &File, len: u64) -> io::Result<[u8; 32]> {
    let mut sha = Sha256::new();
    read_once(file, len, &mut |chunk| sha.update(chunk))?;
    Ok(sha.finalize().into())
}

/// Reads the first `len` bytes of `file` once, in order, handing each chunk to `sink`.
pub(crate) fn read_once(file: &File, len: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
    let mut at = 0u64;
    while at < len {
        let want = buf
            .len()
            .min(usize::try_from(len - at).unwrap_or(usize::MAX));
        let got = read_at(file, &mut buf[..want], at)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was being hashed",
            ));
        }
        sink(&buf[..got]);
        at += got as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, at) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sha256_of_a_file_matches_the_known_digest_across_chunks() {
        let mut file = tempfile::tempfile().unwrap();
        // More than one chunk, not a multiple of it.
        let data: Vec<u8> = (0..CHUNK * 2 + 123).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let whole = sha256_file(&file, data.len() as u64).unwrap();
        assert_eq!(whole, <[u8; 32]>::from(Sha256::digest(&data)));
        // The empty prefix: sha256("").
        assert_eq!(
            hex(&sha256_file(&file, 0).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Claiming more than the file holds is an error, not a short digest.
        let err = sha256_file(&file, data.len() as u64 + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
