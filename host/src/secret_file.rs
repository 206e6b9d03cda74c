//! A new file for a secret (a signing key): only its owner may read or write it, from the
//! moment it exists.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates the file `path`, which must not exist, so that only this process's user may read
/// or write it: mode `0600` on Unix; on Windows a protected access list (nothing inherited
/// from the directory) granting the user alone full access. The file is created so, not made
/// private after, so no one else can open it in between.
pub fn create_new_secret(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }
    #[cfg(windows)]
    {
        crate::windows::create_owner_only(path)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = path;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no way to make a file private to its owner here",
        ))
    }
}

/// This process's user's SID as text (Windows), for a test to compare an access list with.
#[cfg(windows)]
#[doc(hidden)]
pub fn user_sid() -> io::Result<String> {
    crate::windows::user_sid()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_made_new_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        super::create_new_secret(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = super::create_new_secret(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
