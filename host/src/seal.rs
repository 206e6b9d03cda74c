//! A private, sealed copy of a verified library (Linux).
//!
//! The loader maps a library's pages from its file. Mapped from the plugin directory, a
//! later write to that file (`cp new.so plugins/libx.so` keeps the inode) changes the code
//! the host runs — bytes that were never verified — or truncates it under the mapping
//! (`SIGBUS`). Mapped from a `memfd` filled from the verified descriptor and then sealed
//! against every write, nothing anyone does to the plugin file can reach the host.
//!
//! Only what the loader uses is copied (headers and loadable, note and dynamic segments;
//! the rest of the copy reads as zeros), holes stay holes, and the copy is dropped as soon
//! as the library is mapped: its pages live as long as the mapping.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// A sealed, anonymous copy of `len` bytes of `file`: the given `ranges` copied, the rest
/// zero. `name` shows in `/proc/PID/maps` as `/memfd:NAME`.
pub(crate) fn sealed_copy(
    name: &str,
    file: &File,
    len: u64,
    ranges: &[(u64, u64)],
) -> io::Result<File> {
    let name = CString::new(format!("plugin:{name}")).unwrap_or_default();
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the flags are valid.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by `memfd_create`: an open descriptor nobody else owns.
    let copy = unsafe { File::from_raw_fd(fd) };
    copy.set_len(len)?;
    for &(offset, size) in ranges {
        let end = offset.saturating_add(size).min(len);
        copy_data(file, &copy, offset, end)?;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: `copy` is an open memfd created with `MFD_ALLOW_SEALING`; no writable shared
    // mapping of it exists (it was only written with `sendfile`).
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copy)
}

/// Copies the bytes of `from` in `start..end` to the same offsets of `to`, skipping holes.
fn copy_data(from: &File, to: &File, start: u64, end: u64) -> io::Result<()> {
    let mut at = start;
    while at < end {
        let Some(data) = seek(from, at, libc::SEEK_DATA)? else {
            return Ok(()); // only a hole is left
        };
        if data >= end {
            return Ok(());
        }
        let hole = seek(from, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        send(from, to, data, hole)?;
        at = hole;
    }
    Ok(())
}

/// `lseek(fd, at, whence)`; `None` when there is no data (or hole) at or after `at`.
fn seek(file: &File, at: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let at = libc::off_t::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain system call on an open descriptor; the position it moves is not used
    // (every read of `file` is positioned).
    let found = unsafe { libc::lseek(file.as_raw_fd(), at, whence) };
    if found < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(error),
        };
    }
    Ok(Some(found as u64))
}

/// Copies `start..end` of `from` to the same offsets of `to`, in the kernel.
fn send(from: &File, to: &File, start: u64, end: u64) -> io::Result<()> {
    let mut offset =
        libc::off_t::try_from(start).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // `sendfile` writes at the output's file position.
    // SAFETY: plain system call on an open descriptor we own.
    if unsafe { libc::lseek(to.as_raw_fd(), offset, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    while (offset as u64) < end {
        let count = (end - offset as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open; `offset` is a valid `off_t` the call updates.
        let sent = unsafe { libc::sendfile(to.as_raw_fd(), from.as_raw_fd(), &mut offset, count) };
        if sent < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was being copied",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::FileExt;

    #[test]
    fn copies_ranges_and_refuses_writes() {
        let mut original = tempfile::tempfile().unwrap();
        original.write_all(&[7u8; 10_000]).unwrap();
        let copy = sealed_copy("t", &original, 10_000, &[(0, 100), (5000, 200)]).unwrap();
        let mut bytes = Vec::new();
        (&copy).seek(SeekFrom::Start(0)).unwrap();
        (&copy).read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes[..100].iter().all(|&b| b == 7));
        assert!(bytes[100..5000].iter().all(|&b| b == 0));
        assert!(bytes[5000..5200].iter().all(|&b| b == 7));
        // Sealed: no write, no truncation, no growth.
        assert!(copy.write_at(b"x", 0).is_err());
        assert!(copy.set_len(10).is_err());
        assert!(copy.set_len(20_000).is_err());
        // The original changing later does not change the copy.
        original.write_at(&[9u8; 100], 0).unwrap();
        let mut first = [0u8; 100];
        copy.read_exact_at(&mut first, 0).unwrap();
        assert_eq!(first, [7u8; 100]);
    }
}
