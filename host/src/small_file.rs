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
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&file)
            .take(self.limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > self.limit {
            return Err(too_large());
        }
        Ok((bytes, meta))
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
