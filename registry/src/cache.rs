//! What was pulled, kept for `--offline`: blobs by digest (`blobs/sha256/HEX`) and the digest
//! each tag named when last pulled (`refs/REGISTRY/REPOSITORY/TAG`), under
//! `$XDG_CACHE_HOME/plugin-host/oci` (else `~/.cache/plugin-host/oci`).
//!
//! The cache is a hint, never trusted: every blob read from it is checked against its digest
//! and size as it is read, like one from the registry, and what is pulled from it is verified
//! by the host as any pull is. A failure to write the cache is logged, not fatal.

use std::fs;

use std::path::{Path, PathBuf};

use host::small_file::{Links, SmallFile};

use crate::artifact::Descriptor;
use crate::client::{sha256_digest, Fetched, MAX_MANIFEST};
use crate::reference::{is_digest, Reference};
use crate::Error;

const REF_FILE: SmallFile = SmallFile {
    what: "cached tag",
    limit: 128,
    links: Links::Refuse,
};

const BLOB_FILE: SmallFile = SmallFile {
    what: "cached manifest",
    limit: MAX_MANIFEST,
    links: Links::Refuse,
};

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/plugin-host/oci`, else `~/.cache/plugin-host/oci` (on Windows,
    /// `%LOCALAPPDATA%\plugin-host\oci`).
    pub fn default_dir() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None if cfg!(windows) => PathBuf::from(std::env::var_os("LOCALAPPDATA")?),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
        };
        Some(base.join("plugin-host").join("oci"))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        is_digest(digest).then(|| self.dir.join("blobs/sha256").join(&digest[7..]))
    }

    /// Where the digest a tag named is kept; `None` for anything but a tag. The registry,
    /// repository and tag were checked when the reference was parsed: plain names, no `..`,
    /// nothing absolute.
    fn ref_path(&self, reference: &Reference) -> Option<PathBuf> {
        if !reference.is_tag() {
            return None;
        }
        let registry = reference.registry.replace([':', '[', ']'], "_");
        let mut path = self.dir.join("refs").join(registry);
        for component in reference.repository.split('/') {
            path.push(component);
        }
        Some(path.join(&reference.reference))
    }

    fn not_cached(&self, what: String) -> Error {
        Error::NotCached {
            what,
            cache: self.dir.display().to_string(),
        }
    }

    /// Keeps a manifest (by digest) and, for a tag, the digest it named.
    pub(crate) fn put_manifest(&self, reference: &Reference, fetched: &Fetched) {
        let Some(blob) = self.blob_path(&fetched.digest) else {
            return;
        };
        let mut kept = self.write(&blob, &fetched.bytes);
        if let Some(path) = self.ref_path(reference) {
            let media = if fetched.media_type == crate::client::INDEX {
                "index"
            } else {
                "manifest"
            };
            let line = format!("{} {media}\n", fetched.digest);
            kept = kept.and_then(|()| self.write(&path, line.as_bytes()));
        }
        if let Err(e) = kept {
            tracing::warn!(
                "cannot keep {reference} in the cache {}: {e}",
                self.dir.display()
            );
        }
    }

    /// The manifest or index at `reference`, as last pulled.
    pub(crate) fn manifest(&self, reference: &Reference) -> Result<Fetched, Error> {
        let (digest, media_type) = if reference.is_digest() {
            (reference.reference.clone(), None)
        } else {
            let path = self
                .ref_path(reference)
                .ok_or_else(|| self.not_cached(reference.to_string()))?;
            let line = REF_FILE
                .read_to_string(&path)
                .map_err(|_| self.not_cached(reference.to_string()))?;
            let (digest, media) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            (digest.to_owned(), Some(media.to_owned()))
        };
        let path = self
            .blob_path(&digest)
            .ok_or_else(|| self.not_cached(reference.to_string()))?;
        let bytes = BLOB_FILE
            .read(&path)
            .map_err(|_| self.not_cached(format!("{reference} ({digest})")))?;
        let found = sha256_digest(&bytes);
        if found != digest {
            return Err(Error::DigestMismatch {
                what: format!("the cached {reference}"),
                expected: digest,
                found,
            });
        }
        let media_type = match media_type.as_deref() {
            Some("index") => crate::client::INDEX.to_owned(),
            _ => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .unwrap_or_else(|| crate::client::MANIFEST.to_owned()),
        };
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Keeps the blob `digest` written at `path` (already checked).
    pub(crate) fn put_blob_from(&self, digest: &str, path: &Path) {
        let Some(blob) = self.blob_path(digest) else {
            return;
        };
        let kept = (|| {
            let dir = blob.parent().expect("a blob path has a directory");
            self.make_dirs(dir)?;
            host::small_file::write_atomically_with(&blob, |out| {
                std::io::copy(&mut fs::File::open(path)?, out).map(|_| ())
            })
        })();
        if let Err(e) = kept {
            tracing::warn!(
                "cannot keep blob {digest} in the cache {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Copies the cached blob of `descriptor` into `out`, checked against its digest and size.
    pub(crate) fn blob_to(&self, descriptor: &Descriptor, out: &mut fs::File) -> Result<(), Error> {
        let what = format!("blob {}", descriptor.digest);
        let path = self
            .blob_path(&descriptor.digest)
            .ok_or_else(|| self.not_cached(what.clone()))?;
        let file = open_no_follow(&path).map_err(|_| self.not_cached(what.clone()))?;
        let cached = format!("the cached {what}");
        crate::client::copy_checked(
            file,
            out,
            &descriptor.digest,
            descriptor.size,
            &cached,
            |e| Error::Io {
                what: format!("reading {cached}"),
                source: e,
            },
        )
    }
}

impl Cache {
    /// Writes a cache file atomically, its directories made first.
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            self.make_dirs(dir)?;
        }
        host::small_file::write_atomically(path, bytes)
    }

    /// Makes `dir` (under the cache directory) and its parents, private (0700), refusing a
    /// symbolic link on the way: a link planted in the cache would send a write elsewhere.
    fn make_dirs(&self, dir: &Path) -> std::io::Result<()> {
        let relative = dir
            .strip_prefix(&self.dir)
            .map_err(|_| std::io::Error::other("outside the cache"))?;
        let mut at = self.dir.clone();
        let steps = std::iter::once(None).chain(relative.components().map(Some));
        for component in steps {
            if let Some(component) = component {
                at.push(component);
            }
            match fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => {
                    return Err(std::io::Error::other(format!(
                        "{} is not a directory (a link?)",
                        at.display()
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    #[cfg_attr(not(unix), allow(unused_mut))]
                    let mut builder = fs::DirBuilder::new();
                    builder.recursive(component.is_none());
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::DirBuilderExt;
                        builder.mode(0o700);
                    }
                    builder.create(&at)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Opens a regular file, refusing a link, without blocking on a FIFO or a device left in
/// its place (it is then refused as not a regular file).
fn open_no_follow(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_in_place_of_a_blob_is_not_cached_never_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let path = cache.blob_path(&digest).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let descriptor = Descriptor {
            media_type: "application/octet-stream".into(),
            digest,
            size: 4,
            annotations: Default::default(),
            artifact_type: None,
            platform: None,
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = tempfile::tempfile().unwrap();
            let _ = done.send(cache.blob_to(&descriptor, &mut out));
        });
        let outcome = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading the cached blob hung on a FIFO");
        assert!(
            matches!(outcome, Err(Error::NotCached { .. })),
            "{outcome:?}"
        );
    }
}
