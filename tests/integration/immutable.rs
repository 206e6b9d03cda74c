//! The immutable attribute (`chattr +i`), for the tests and benchmarks of loading files that
//! cannot change.

use std::fs;
use std::path::Path;

/// `chattr +i` / `chattr -i` on `path` (`FS_IOC_SETFLAGS` with `FS_IMMUTABLE_FL`).
pub fn set_immutable(path: &Path, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    let file = fs::File::open(path)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: the ioctls read and write one `int` of flags for an open descriptor.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    flags = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    // SAFETY: as above.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Clears the immutable attribute again, whatever the test did (or the file cannot be removed).
pub struct Immutable<'a>(pub &'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = set_immutable(self.0, false);
    }
}
