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
    copy_in(name, file, len, ranges, (1 << 30, &|| {}))
}

/// The most bytes one `sendfile` of [`sealed_copy_between`] copies.
const CHUNK: u64 = 128 << 10;

/// [`sealed_copy`], running `between` before each chunk of at most [`CHUNK`] bytes it
/// copies (the copy made ahead waits there while the scan maps a library: see `ahead`).
pub(crate) fn sealed_copy_between(
    name: &str,
    file: &File,
    len: u64,
    ranges: &[(u64, u64)],
    between: &dyn Fn(),
) -> io::Result<File> {
    copy_in(name, file, len, ranges, (CHUNK, between))
}

/// The largest chunk one `sendfile` copies, and what runs before each.
type Chunks<'a> = (u64, &'a dyn Fn());

fn copy_in(
    name: &str,
    file: &File,
    len: u64,
    ranges: &[(u64, u64)],
    chunks: Chunks<'_>,
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
    fill(file, &copy, len, ranges, chunks)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: `copy` is an open memfd created with `MFD_ALLOW_SEALING`; no writable shared
    // mapping of it exists (it was only written with `sendfile`).
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copy)
}

/// Copies the given `ranges` of the first `len` bytes of `file` into `to` (empty, made
/// `len` bytes long here; the rest reads as zeros): a copy kept in the store of copies
/// (see `store`), which is not a `memfd` and so is not sealed. `between`, when given, runs
/// before each chunk of at most [`CHUNK`] bytes copied (a copy made ahead waits there while
/// the scan's thread maps a library).
pub(crate) fn copy_into(
    file: &File,
    to: &File,
    len: u64,
    ranges: &[(u64, u64)],
    between: Option<&dyn Fn()>,
) -> io::Result<()> {
    match between {
        Some(between) => fill(file, to, len, ranges, (CHUNK, between)),
        None => fill(file, to, len, ranges, (1 << 30, &|| {})),
    }
}

/// Makes `to` `len` bytes long and copies the `ranges` of `file` into it.
fn fill(
    file: &File,
    to: &File,
    len: u64,
    ranges: &[(u64, u64)],
    chunks: Chunks<'_>,
) -> io::Result<()> {
    to.set_len(len)?;
    for (start, end) in merged(ranges, len) {
        copy_data(file, to, start, end, chunks)?;
    }
    Ok(())
}

/// `ranges` (`(offset, size)`, overlapping as a library's segments and headers do) as
/// `start..end` spans within `len`, in order, those that overlap or touch merged: each
/// byte is copied once, in as few calls as there are separate spans.
fn merged(ranges: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(offset, size)| (offset.min(len), offset.saturating_add(size).min(len)))
        .filter(|(start, end)| start < end)
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Copies the bytes of `from` in `start..end` to the same offsets of `to`, skipping holes.
fn copy_data(from: &File, to: &File, start: u64, end: u64, chunks: Chunks<'_>) -> io::Result<()> {
    let mut at = start;
    while at < end {
        let Some(data) = seek(from, at, libc::SEEK_DATA)? else {
            return Ok(()); // only a hole is left
        };
        if data >= end {
            return Ok(());
        }
        let hole = seek(from, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        send(from, to, data, hole, chunks)?;
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
fn send(
    from: &File,
    to: &File,
    start: u64,
    end: u64,
    (chunk, between): Chunks<'_>,
) -> io::Result<()> {
    let mut offset =
        libc::off_t::try_from(start).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // `sendfile` writes at the output's file position.
    // SAFETY: plain system call on an open descriptor we own.
    if unsafe { libc::lseek(to.as_raw_fd(), offset, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    while (offset as u64) < end {
        between();
        let count = (end - offset as u64).min(chunk) as usize;
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

/// Why a file cannot change while it is mapped, so that mapping it is as safe as mapping a
/// sealed copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unchangeable {
    /// The immutable attribute (`chattr +i`): no one writes, truncates or renames it until
    /// a process holding `CAP_LINUX_IMMUTABLE` clears the flag.
    Immutable,
    /// fs-verity: the file system refuses every write to it for good.
    Verity,
    /// On a file system that is read-only itself (its superblock, as for squashfs or erofs
    /// images and file systems mounted `ro`), not just through this mount: a read-only bind
    /// mount of a writable file system does not count, as another mount of it still writes
    /// the same file.
    ReadOnlyFileSystem,
}

impl std::fmt::Display for Unchangeable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unchangeable::Immutable => "it has the immutable attribute",
            Unchangeable::Verity => "it is protected by fs-verity",
            Unchangeable::ReadOnlyFileSystem => "its file system is read-only",
        })
    }
}

/// Whether `file` cannot be written to while it stays so (see [`Unchangeable`]); `None`
/// when it can, or when that cannot be told.
pub(crate) fn cannot_change(file: &File) -> Option<Unchangeable> {
    cannot_change_now(file).and_then(|(why, _)| why)
}

/// A file's size and modification time (seconds and nanoseconds), as `Metadata` gives them.
pub(crate) type Contents = (u64, i64, i64);

/// [`cannot_change`], and the file's [`Contents`] told by the same `statx` (`None` when
/// that call fails, or does not tell them).
pub(crate) fn cannot_change_now(file: &File) -> Option<(Option<Unchangeable>, Contents)> {
    // SAFETY: `statx` is plain data for which all zeros is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an open descriptor with an empty path and `AT_EMPTY_PATH` describes that
    // descriptor's file; `stx` is a valid buffer the call fills.
    let done = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID | libc::STATX_SIZE | libc::STATX_MTIME,
            &mut stx,
        )
    };
    let told = libc::STATX_SIZE | libc::STATX_MTIME;
    if done != 0 || stx.stx_mask & told != told {
        return None;
    }
    let contents = (
        stx.stx_size,
        stx.stx_mtime.tv_sec,
        i64::from(stx.stx_mtime.tv_nsec),
    );
    Some((unchangeable(file, &stx), contents))
}

/// File systems whose files change only through this kernel, and whose word on a file's
/// attributes is the kernel's: the local ones ([`crate::small_file::LOCAL_FILE_SYSTEMS`]),
/// and the read-only images SquashFS and EROFS. Not a network or FUSE file system (another
/// machine or a user-space server can change a file, or claim any attribute), nor an overlay
/// (its lower directories can change under a read-only mount).
fn kernel_owns(kind: u32) -> bool {
    const READ_ONLY_IMAGES: [u32; 2] = [
        0x7371_7368, // SquashFS
        0xE0F5_E1E2, // EROFS
    ];
    crate::small_file::LOCAL_FILE_SYSTEMS.contains(&kind) || READ_ONLY_IMAGES.contains(&kind)
}

/// What `stx`, `file`'s `statx`, says makes it unchangeable.
fn unchangeable(file: &File, stx: &libc::statx) -> Option<Unchangeable> {
    let said = said_unchangeable(file, stx)?;
    // Asked last (most files are none of these, and are copied): only a file system the
    // kernel alone changes has the last word.
    crate::small_file::fs_type(file)
        .is_some_and(kernel_owns)
        .then_some(said)
}

/// What `stx` and the file's mount say of `file`, whatever its file system.
fn said_unchangeable(file: &File, stx: &libc::statx) -> Option<Unchangeable> {
    let attributes = stx.stx_attributes & stx.stx_attributes_mask;
    if attributes & libc::STATX_ATTR_IMMUTABLE as u64 != 0 {
        return Some(Unchangeable::Immutable);
    }
    if attributes & libc::STATX_ATTR_VERITY as u64 != 0 {
        return Some(Unchangeable::Verity);
    }
    // Cheap first: a writable mount cannot be on a read-only superblock.
    // SAFETY: `statvfs` is plain data; the call fills it for an open descriptor.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut vfs) } != 0
        || vfs.f_flag & libc::ST_RDONLY == 0
        || stx.stx_mask & libc::STATX_MNT_ID == 0
    {
        return None;
    }
    let mountinfo = read_mountinfo()?;
    superblock_read_only(&mountinfo, stx.stx_mnt_id).then_some(Unchangeable::ReadOnlyFileSystem)
}

/// This process's `/proc/self/mountinfo`, at most 4 MiB of it.
fn read_mountinfo() -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    File::open("/proc/self/mountinfo")
        .ok()?
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Whether the mount `id` in `mountinfo` (proc(5)) is of a read-only superblock: its super
/// options, the last field after the `-` separator, include `ro`.
fn superblock_read_only(mountinfo: &str, id: u64) -> bool {
    mountinfo.lines().any(|line| {
        let mut fields = line.split(' ');
        if fields.next().and_then(|f| f.parse::<u64>().ok()) != Some(id) {
            return false;
        }
        // After the separator: file system type, source, super options.
        let mut after = fields.skip_while(|f| *f != "-").skip(1);
        after
            .nth(2)
            .is_some_and(|options| options.split(',').any(|o| o == "ro"))
    })
}

/// Whether two `fstat`s of one file show the same contents: same size and modification
/// time. (Not the change time: renaming another file over this one — the safe way to
/// replace a plugin — changes this file's link count, and so its change time.)
pub(crate) fn same_contents(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (before.len(), before.mtime(), before.mtime_nsec())
        == (after.len(), after.mtime(), after.mtime_nsec())
}

/// Whether two `fstat`s of one file show it untouched: [`same_contents`], and the same
/// change time (not even renamed over or `chmod`ed): what a kept copy's name says of it.
pub(crate) fn untouched(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    same_contents(before, after)
        && (before.ctime(), before.ctime_nsec()) == (after.ctime(), after.ctime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_super_options_decide_not_the_mount_options() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
92 22 0:40 / /srv/image ro,relatime shared:7 - squashfs /dev/loop0 ro
93 22 8:1 /data /srv/bound ro,relatime - ext4 /dev/vda rw
94 22 0:41 / /srv/odd\\040name ro master:3 - erofs /dev/loop1 ro,user_xattr
95 22 0:42 / /srv/tricky ro - tmpfs ro rw
";
        assert!(!superblock_read_only(info, 22));
        assert!(superblock_read_only(info, 92));
        // A read-only bind mount of a writable file system: another mount writes the file.
        assert!(!superblock_read_only(info, 93));
        assert!(superblock_read_only(info, 94));
        // The source field says `ro`, the super options do not.
        assert!(!superblock_read_only(info, 95));
        assert!(!superblock_read_only(info, 96));
        assert!(!superblock_read_only("garbage\n- - - ro\n", 0));
    }

    #[test]
    fn a_writable_file_can_change() {
        let file = tempfile::tempfile().unwrap();
        assert_eq!(cannot_change(&file), None);
    }

    #[test]
    fn the_copy_made_ahead_runs_its_hook_before_each_chunk() {
        let mut original = tempfile::tempfile().unwrap();
        original.write_all(&vec![5u8; 300 << 10]).unwrap();
        let calls = std::cell::Cell::new(0);
        let copy = sealed_copy_between("t", &original, 300 << 10, &[(0, 300 << 10)], &|| {
            calls.set(calls.get() + 1)
        })
        .unwrap();
        assert_eq!(calls.get(), 3, "128 + 128 + 44 KiB");
        let mut last = [0u8; 4];
        copy.read_exact_at(&mut last, (300 << 10) - 4).unwrap();
        assert_eq!(last, [5; 4]);
    }

    #[test]
    fn copies_ranges_and_refuses_writes() {
        let mut original = tempfile::tempfile().unwrap();
        original.write_all(&[7u8; 10_000]).unwrap();
        // Overlapping and touching ranges, as a library's headers and segments are.
        let ranges = [(5000, 200), (0, 100), (20, 30), (5100, 150), (9_990, 50)];
        assert_eq!(
            merged(&ranges, 10_000),
            [(0, 100), (5000, 5250), (9_990, 10_000)]
        );
        let copy = sealed_copy("t", &original, 10_000, &ranges).unwrap();
        let mut bytes = Vec::new();
        (&copy).seek(SeekFrom::Start(0)).unwrap();
        (&copy).read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes[..100].iter().all(|&b| b == 7));
        assert!(bytes[100..5000].iter().all(|&b| b == 0));
        assert!(bytes[5000..5250].iter().all(|&b| b == 7));
        assert!(bytes[5250..9_990].iter().all(|&b| b == 0));
        assert!(bytes[9_990..].iter().all(|&b| b == 7));
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
