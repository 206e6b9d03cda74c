//! Reading the small files the host keeps or is pointed at — configuration, the lock file, the
//! index cache, signatures, trusted keys — when any of them may have been planted.
//!
//! Every read opens without blocking (a FIFO with no writer would otherwise wait forever),
//! checks with `fstat` on the opened descriptor that it is a regular file (not a FIFO, a device
//! such as `/dev/zero`, a socket or a directory), refuses one larger than its limit, and then
//! reads at most the limit plus one byte (a file that grows while it is read is refused too).
//! Whether a symbolic link is followed is the caller's choice ([`Links`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Whether the last component of the path may be a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (the file it leads to must still be a regular file): for files a user may
    /// keep elsewhere and link, such as configuration in a dotfiles repository.
    Follow,
    /// Refuse it (`O_NOFOLLOW`): for files the host itself writes (the lock file, the index
    /// cache), which are never links — one there was planted.
    Refuse,
}

/// A small file to read: what it is (for messages), its size limit, and whether a link to it
/// is followed.
#[derive(Debug, Clone, Copy)]
pub struct SmallFile {
    /// What the file is, as a message names it: `configuration file`, `lock file`, ….
    pub what: &'static str,
    /// The most bytes it may hold.
    pub limit: u64,
    /// Whether a symbolic link is followed.
    pub links: Links,
}

/// Why a small file could not be read. Each names the file and what it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmallFileError {
    /// Opening, `fstat` or reading failed (`NotFound` among others: see
    /// [`SmallFileError::is_not_found`]).
    #[error("{}: cannot read the {what}: {source}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A FIFO, a device, a socket or a directory.
    #[error("{}: the {what} is {kind}, not a regular file", path.display())]
    NotRegular {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it is instead (`a FIFO`, `a device`, …).
        kind: &'static str,
    },
    /// A symbolic link where the host only ever writes a regular file.
    #[error(
        "{}: the {what} is a symbolic link; the host writes it as a regular file, so a link \
         there was put there by someone else: remove it",
        path.display()
    )]
    Symlink {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// Larger than its limit.
    #[error("{}: the {what} is larger than {limit} bytes, the most accepted", path.display())]
    TooLarge {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Not UTF-8 (for text files).
    #[error("{}: the {what} is not UTF-8 text", path.display())]
    NotText {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl SmallFileError {
    /// Whether the file does not exist (then many callers go on without it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SmallFileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// What is wrong, without the file's path: for a caller whose own message names it.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        match text.strip_prefix(&prefix) {
            Some(detail) => detail.to_owned(),
            None => text,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            SmallFileError::Io { path, .. }
            | SmallFileError::NotRegular { path, .. }
            | SmallFileError::Symlink { path, .. }
            | SmallFileError::TooLarge { path, .. }
            | SmallFileError::NotText { path, .. } => path,
        }
    }
}

impl SmallFile {
    /// The file's bytes.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, SmallFileError> {
        self.read_with_metadata(path).map(|(bytes, _)| bytes)
    }

    /// The file's bytes, and the metadata of the very file they were read from (`fstat` of
    /// the descriptor: its owner, say, cannot have changed between a check and the read).
    pub fn read_with_metadata(
        &self,
        path: &Path,
    ) -> Result<(Vec<u8>, std::fs::Metadata), SmallFileError> {
        let (file, meta) = self.open(path)?;
        Ok((self.read_open(path, &file, meta.len())?, meta))
    }

    /// The file's bytes — mapped where they are (see [`Mapped`]) when the file is at least
    /// `map_from` bytes and only its owner can write it, else read — and the metadata of the
    /// very file they are (`fstat` of the descriptor). For a large file the host writes and
    /// reads on every start (the index cache): mapping a file that is in the page cache
    /// touches none of the new memory a copy of it would.
    pub(crate) fn read_or_map(
        &self,
        path: &Path,
        map_from: u64,
    ) -> Result<(FileBytes, std::fs::Metadata), SmallFileError> {
        let (file, meta) = self.open(path)?;
        #[cfg(target_os = "linux")]
        if meta.len() >= map_from.max(1) {
            if let Some(mapped) = Mapped::of(&file, &meta) {
                return Ok((FileBytes::Mapped(mapped), meta));
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = map_from;
        let bytes = self.read_open(path, &file, meta.len())?;
        Ok((FileBytes::Read(bytes), meta))
    }

    /// Opens `path` as this file is read: not blocking, a link followed or not, and checked
    /// to be a regular file within the limit (by `fstat` of the descriptor).
    fn open(&self, path: &Path) -> Result<(File, std::fs::Metadata), SmallFileError> {
        let io = |source: io::Error| SmallFileError::Io {
            what: self.what,
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
            if self.links == Links::Refuse {
                flags |= libc::O_NOFOLLOW;
            }
            options.custom_flags(flags);
        }
        let file: File = match options.open(path) {
            Ok(file) => file,
            // `O_NOFOLLOW` on a link: ELOOP. Say what it is rather than "too many levels".
            #[cfg(unix)]
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) && self.links == Links::Refuse => {
                let is_link = path.symlink_metadata().is_ok_and(|m| m.is_symlink());
                return Err(if is_link {
                    SmallFileError::Symlink {
                        what: self.what,
                        path: path.to_owned(),
                    }
                } else {
                    io(e)
                });
            }
            Err(e) => return Err(io(e)),
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(SmallFileError::NotRegular {
                what: self.what,
                path: path.to_owned(),
                kind: kind_of(&meta.file_type()),
            });
        }
        let too_large = || SmallFileError::TooLarge {
            what: self.what,
            path: path.to_owned(),
            limit: self.limit,
        };
        if meta.len() > self.limit {
            return Err(too_large());
        }
        Ok((file, meta))
    }

    /// Reads the file opened by [`SmallFile::open`], of `size` bytes by its `fstat`: at most
    /// the limit plus one byte (one that grew past the limit since is refused).
    fn read_open(&self, path: &Path, file: &File, size: u64) -> Result<Vec<u8>, SmallFileError> {
        let mut bytes = Vec::with_capacity(size.min(self.limit) as usize);
        file.take(self.limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| SmallFileError::Io {
                what: self.what,
                path: path.to_owned(),
                source,
            })?;
        if bytes.len() as u64 > self.limit {
            return Err(SmallFileError::TooLarge {
                what: self.what,
                path: path.to_owned(),
                limit: self.limit,
            });
        }
        Ok(bytes)
    }

    /// The file's text.
    pub fn read_to_string(&self, path: &Path) -> Result<String, SmallFileError> {
        self.text(path, self.read(path)?)
    }

    /// `bytes`, read from `path`, as text.
    pub fn text(&self, path: &Path, bytes: Vec<u8>) -> Result<String, SmallFileError> {
        String::from_utf8(bytes).map_err(|_| SmallFileError::NotText {
            what: self.what,
            path: path.to_owned(),
        })
    }
}

/// A file's bytes: read into memory, or mapped where they are.
pub(crate) enum FileBytes {
    /// Read (a copy).
    Read(Vec<u8>),
    /// Mapped, read-only (see [`Mapped`]).
    #[cfg(target_os = "linux")]
    Mapped(Mapped),
}

impl Default for FileBytes {
    fn default() -> Self {
        FileBytes::Read(Vec::new())
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Read(bytes) => bytes,
            #[cfg(target_os = "linux")]
            FileBytes::Mapped(mapped) => mapped.bytes(),
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            FileBytes::Read(_) => "read",
            #[cfg(target_os = "linux")]
            FileBytes::Mapped(_) => "mapped",
        };
        write!(f, "FileBytes({how}, {} bytes)", self.len())
    }
}

/// A whole file mapped read-only and private: its bytes without a copy, shared with the page
/// cache (a file read on every start is there, and mapping it touches no new memory).
///
/// Made only where the mapping cannot be changed or cut under the host by anyone the host
/// does not already answer to. A mapped file written in place shows the new bytes, and one
/// truncated kills the process that reads past its new end with `SIGBUS`; so the file must be
///
/// - owned by the host's effective user and writable by no one else (no write bit for its
///   group or others: with an ACL, the group bits are the mask of every other entry), so
///   that only a process of the same user — which can kill the host anyway — or root can
///   write or truncate it; the host itself only ever replaces such a file (a new file renamed
///   over it, see [`write_atomically`]), which leaves a mapping of the old one whole;
/// - on a local file system whose files change only through this kernel (ext4, XFS, Btrfs,
///   F2FS, tmpfs): not a network or FUSE file system, where another machine or a user-space
///   server can cut a file.
///
/// Otherwise the file is read. What the bytes say is still checked like any other input (a
/// cache's content is hostile): a mapping only saves the copy.
#[cfg(target_os = "linux")]
pub(crate) struct Mapped {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone (unmapped on drop); reading
// it from several threads is reading shared immutable memory.
#[cfg(target_os = "linux")]
unsafe impl Send for Mapped {}
// SAFETY: as for `Send`: `&Mapped` only gives `&[u8]`.
#[cfg(target_os = "linux")]
unsafe impl Sync for Mapped {}

/// `TMPFS_MAGIC` (`linux/magic.h`): [`fs_type`] of a `tmpfs`.
#[cfg(target_os = "linux")]
pub(crate) const TMPFS_MAGIC: u32 = 0x0102_1994;

/// The type of the file system `file` is on (`fstatfs`'s `f_type`, as `linux/magic.h` names
/// them); `None` when it cannot be told.
#[cfg(target_os = "linux")]
pub(crate) fn fs_type(file: &File) -> Option<u32> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `statfs` is plain integers: all zeroes is a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fstatfs` writes one `statfs` we own, for the open descriptor, which lives
    // across the call.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) };
    // The magic numbers fit 32 bits; `f_type`'s width differs between C libraries.
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some(fs.f_type as u32)
}

/// File systems whose files change only through this kernel (as [`fs_type`] tells them):
/// not a network or FUSE file system, where another machine or a user-space server can.
#[cfg(target_os = "linux")]
pub(crate) const LOCAL_FILE_SYSTEMS: [u32; 5] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0xF2F5_2010, // F2FS
    TMPFS_MAGIC,
];

/// Why the file or directory `meta` describes is one that someone besides this process's
/// user and root could change, if it is: another user owns it, or its group or anyone else
/// may write it — unless it is a sticky directory, where they may add entries but neither
/// rename nor remove this user's. `None`: only this user and root can.
#[cfg(unix)]
pub(crate) fn others_may_change(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "it belongs to user {}, not to this process's user or root",
            meta.uid()
        ));
    }
    let sticky_dir = meta.is_dir() && meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky_dir {
        return Some(format!(
            "others than its owner may write it (mode {:o}){}",
            meta.mode() & 0o7777,
            if meta.is_dir() {
                " and it is not sticky"
            } else {
                ""
            }
        ));
    }
    None
}

#[cfg(target_os = "linux")]
impl Mapped {
    /// Whether `file` is on one of the [`LOCAL_FILE_SYSTEMS`].
    pub(crate) fn on_local_fs(file: &File) -> bool {
        fs_type(file).is_some_and(|kind| LOCAL_FILE_SYSTEMS.contains(&kind))
    }

    /// `file` (its `fstat` is `meta`) mapped whole, if it may be (see [`Mapped`]).
    fn of(file: &File, meta: &std::fs::Metadata) -> Option<Mapped> {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let owner = unsafe { libc::geteuid() };
        if meta.uid() != owner || meta.mode() & 0o022 != 0 {
            return None;
        }
        if !Self::on_local_fs(file) {
            return None;
        }
        let len = usize::try_from(meta.len()).ok().filter(|&n| n > 0)?;
        // SAFETY: a new private read-only mapping of `len` bytes of the open descriptor at
        // offset 0, placed by the kernel (no address given): it aliases no Rust memory. The
        // descriptor may be closed afterwards; the mapping keeps the file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Mapped {
            ptr: std::ptr::NonNull::new(ptr.cast())?,
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes, unmapped only on drop, so
        // for as long as `self` is borrowed. Its bytes change only if the file is written in
        // place, which `Mapped::of` allows only to the host's own user and root; nothing
        // unsafe relies on them staying the same (every read of them is bounds-checked).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Mapped::of`, unmapped once, here; no borrow of it
        // outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// What a file type is, in words with their article (`a FIFO`, `a device`, `a directory`, …):
/// for messages about a file that is not what was expected.
pub fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// A new file `.NAME.tmp.PID.N` in `dir`, created exclusively (`O_CREAT|O_EXCL`, and
/// `O_NOFOLLOW`): a file or a symbolic link already at that name — planted by someone who
/// guessed it — is never written through; the next `N` is tried. Write it, then rename it over
/// the real file.
pub(crate) fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    for n in 0..100u32 {
        let path = dir.join(format!(".{name}.tmp.{pid}.{n}"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        }
        match options.open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "too many stale temporary files",
    ))
}

/// Writes `path` atomically and never through a link: `bytes` go to a new temporary file
/// beside it (`create_temp`: created exclusively, `O_NOFOLLOW`), which is synced and renamed
/// over `path`; the directory is synced too. A symbolic link at `path` is replaced, not
/// followed; a reader sees the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically_with(path, |file| io::Write::write_all(file, bytes))
}

/// [`write_atomically`], with the temporary file's content written by `write` (which may,
/// say, stream a large file into it or set its permissions).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let (tmp, mut file) = create_temp(dir, &name)?;
    let written = write(&mut file)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself must reach the disk too.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const LOCK: SmallFile = SmallFile {
        what: "lock file",
        limit: 16,
        links: Links::Refuse,
    };
    const CONFIG: SmallFile = SmallFile {
        what: "configuration file",
        limit: 16,
        links: Links::Follow,
    };

    #[test]
    fn regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789abcdef").unwrap();
        assert_eq!(LOCK.read(&f).unwrap(), b"0123456789abcdef");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(CONFIG.read_to_string(&link).unwrap(), "0123456789abcdef");
        let e = LOCK.read(&link).unwrap_err();
        assert!(matches!(e, SmallFileError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("lock file"), "{e}");

        std::fs::write(&f, b"0123456789abcdefg").unwrap();
        let e = CONFIG.read(&f).unwrap_err().to_string();
        assert!(
            e.contains("larger than 16 bytes") && e.contains(&*f.to_string_lossy()),
            "{e}"
        );

        assert!(LOCK
            .read(&dir.path().join("none"))
            .unwrap_err()
            .is_not_found());
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            CONFIG.read_to_string(&f),
            Err(SmallFileError::NotText { .. })
        ));
    }

    #[test]
    fn an_atomic_write_goes_through_no_link_planted_at_the_file_or_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("out.minisig");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let pid = std::process::id();
        for n in 0..3 {
            let name = dir.path().join(format!(".out.minisig.tmp.{pid}.{n}"));
            std::os::unix::fs::symlink(&victim, name).unwrap();
        }
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{meta:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_file_only_its_owner_can_write_is_mapped_else_read() {
        use std::os::unix::fs::PermissionsExt;
        const CACHE: SmallFile = SmallFile {
            what: "index cache",
            limit: 1 << 20,
            links: Links::Refuse,
        };
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("index.bin");
        let old: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&f, &old).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let local = Mapped::on_local_fs(&File::open(&f).unwrap());
        let mapped = |bytes: &FileBytes| matches!(bytes, FileBytes::Mapped(_));

        // Large enough, the owner's alone, on a local file system: mapped, the same bytes.
        let held = CACHE.read_or_map(&f, 64 << 10).unwrap().0;
        assert_eq!(
            mapped(&held),
            local,
            "{held:?} (local file system: {local})"
        );
        assert_eq!(&held[..], &old[..]);

        // Replaced the way the host writes it (a new file renamed over it): the mapping
        // still holds the bytes it mapped, and the next read has the new ones.
        let new = vec![7u8; 90_000];
        write_atomically(&f, &new).unwrap();
        assert_eq!(&held[..], &old[..]);
        assert_eq!(&CACHE.read_or_map(&f, 64 << 10).unwrap().0[..], &new[..]);

        // Smaller than asked: read.
        let small = CACHE.read_or_map(&f, 1 << 20).unwrap().0;
        assert!(!mapped(&small), "{small:?}");
        assert_eq!(&small[..], &new[..]);

        // Writable by its group or by anyone: read, never mapped.
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let read = CACHE.read_or_map(&f, 64 << 10).unwrap().0;
            assert!(!mapped(&read), "mode {mode:o}: {read:?}");
            assert_eq!(&read[..], &new[..]);
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(mapped(&CACHE.read_or_map(&f, 64 << 10).unwrap().0), local);

        // Owned by another user (only root can give a file away): read.
        // SAFETY: `geteuid` has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
            let read = CACHE.read_or_map(&f, 64 << 10).unwrap().0;
            assert!(!mapped(&read), "another user's: {read:?}");
            assert_eq!(&read[..], &new[..]);
        }

        // The same refusals as a read: a link, a file over the limit, an empty file.
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(matches!(
            CACHE.read_or_map(&link, 64 << 10).map(|(bytes, _)| bytes),
            Err(SmallFileError::Symlink { .. })
        ));
        std::fs::write(&f, vec![0u8; (1 << 20) + 1]).unwrap();
        assert!(matches!(
            CACHE.read_or_map(&f, 64 << 10).map(|(bytes, _)| bytes),
            Err(SmallFileError::TooLarge { .. })
        ));
        std::fs::write(&f, b"").unwrap();
        let empty = CACHE.read_or_map(&f, 0).unwrap().0;
        assert!(!mapped(&empty) && empty.is_empty(), "{empty:?}");
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = CONFIG.read(&fifo).unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");

        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = CONFIG.read(&zero).unwrap_err().to_string();
        assert!(e.contains("a device, not a regular file"), "{e}");
        assert!(matches!(
            LOCK.read(&zero),
            Err(SmallFileError::Symlink { .. })
        ));
        let e = CONFIG.read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("a device"), "{e}");
    }
}
