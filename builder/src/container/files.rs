//! Copying trees and hashing files, for contexts and staging.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::ContainerError;

/// The largest build output [`copy_regular`] copies (a plugin library is far smaller).
pub(crate) const MAX_OUTPUT: u64 = 1 << 30;

/// Copies the regular file `name` in the directory `dir` to `to`, a new file (created with
/// `O_EXCL|O_NOFOLLOW`, mode `rwxr-xr-x`), and returns the hex SHA-256 of the bytes written.
///
/// A build's output is untrusted: the source is opened relative to the directory's descriptor
/// with `O_NOFOLLOW|O_NONBLOCK` and must be a regular file of at most [`MAX_OUTPUT`] bytes
/// (`fstat` of the opened descriptor), so a symlink to a file of this machine, a FIFO or a
/// device is an error ([`ContainerError::NotARegularFile`]) and nothing is read through it.
/// On an error `to` is removed.
pub(crate) fn copy_regular(dir: &Path, name: &str, to: &Path) -> Result<String, ContainerError> {
    let source = dir.join(name);
    let io = ContainerError::io;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ContainerError::NotARegularFile {
            path: source,
            kind: "name with a path in it",
        });
    }
    let dir_file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(io(dir))?;
    let c_name = CString::new(name.as_bytes()).map_err(|_| ContainerError::NotARegularFile {
        path: source.clone(),
        kind: "name with a NUL byte in it",
    })?;
    // SAFETY: `dir_file` is an open directory and `c_name` a NUL-terminated string, both alive
    // for the call; openat returns a new descriptor or -1 and touches no memory of ours.
    let fd = unsafe {
        libc::openat(
            dir_file.as_raw_fd(),
            c_name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            // O_NOFOLLOW on a symlink.
            Some(libc::ELOOP) => ContainerError::NotARegularFile {
                path: source,
                kind: "a symbolic link",
            },
            _ => ContainerError::Io {
                path: source,
                source: error,
            },
        });
    }
    // SAFETY: `fd` was just returned by openat, is valid and owned by nothing else.
    let mut file = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata().map_err(io(&source))?;
    if !meta.is_file() {
        let kind = host::small_file::kind_of(&meta.file_type());
        return Err(ContainerError::NotARegularFile { path: source, kind });
    }
    if meta.len() > MAX_OUTPUT {
        return Err(ContainerError::Io {
            path: source,
            source: std::io::Error::other(format!(
                "{} bytes, more than a build output may have ({MAX_OUTPUT})",
                meta.len()
            )),
        });
    }
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(to)
        .map_err(io(to))?;
    let copied = (|| -> Result<String, ContainerError> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(io(&source))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > MAX_OUTPUT {
                return Err(ContainerError::Io {
                    path: source.clone(),
                    source: std::io::Error::other("it grew while it was copied"),
                });
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(io(to))?;
        }
        out.sync_all().map_err(io(to))?;
        Ok(hex(&hasher.finalize()))
    })();
    if copied.is_err() {
        let _ = fs::remove_file(to);
    }
    copied
}

/// Makes `path` executable by everyone (`rwxr-xr-x`).
pub(crate) fn make_executable(path: &Path) -> Result<(), ContainerError> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(ContainerError::io(path))
}

/// The hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, ContainerError> {
    let mut file = fs::File::open(path).map_err(ContainerError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(ContainerError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path`, creating its parent directory.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), ContainerError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(ContainerError::io(parent))?;
    }
    fs::write(path, text).map_err(ContainerError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn refused(dir: &Path, name: &str) -> String {
        let to = dir.join("copy");
        let error = copy_regular(dir, name, &to)
            .expect_err("copied")
            .to_string();
        assert!(!to.exists(), "{name}: a copy was left at {}", to.display());
        error
    }

    #[test]
    fn copies_a_regular_file_and_returns_the_hash_of_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("lib.so"), b"abc").unwrap();
        let to = dir.path().join("out.so");
        let sha = copy_regular(dir.path(), "lib.so", &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"abc");
        assert_eq!(sha, sha256_file(&to).unwrap());
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Never over an existing file or link.
        let again = copy_regular(dir.path(), "lib.so", &to).unwrap_err();
        assert!(again.to_string().contains("exists"), "{again}");
    }

    #[test]
    fn refuses_a_symlink_a_fifo_and_a_directory_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"host file").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("link.so")).unwrap();
        let error = refused(dir.path(), "link.so");
        assert!(
            error.contains("link.so") && error.contains("symbolic link"),
            "{error}"
        );

        let fifo = CString::new(dir.path().join("fifo.so").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path, alive for the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // Opened without blocking (no writer), then refused by its type.
        let error = refused(dir.path(), "fifo.so");
        assert!(
            error.contains("fifo.so") && error.contains("FIFO"),
            "{error}"
        );

        fs::create_dir(dir.path().join("dir.so")).unwrap();
        let error = refused(dir.path(), "dir.so");
        assert!(error.contains("directory"), "{error}");

        let error = refused(dir.path(), "../secret");
        assert!(error.contains("path"), "{error}");
    }
}
