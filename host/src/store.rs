//! Copies kept between runs (Linux, [`crate::LoadFrom::KeptCopy`]): a private copy of a
//! verified library, made by the first process that loads it and mapped by every later one
//! until the plugin file changes.
//!
//! A sealed copy ([`crate::seal`]) is made for every load, so every start pays for copying
//! each plugin, and N processes that load one plugin hold N copies of it. A kept copy is as
//! immune to writes to the plugin file (`cp new.so plugins/libx.so`) — it is another file —
//! and is made once: a later start maps it as it would map the plugin file in place, and
//! processes share its pages.
//!
//! The store is input to distrust like any other:
//! - it is a directory of this user's with no access for anyone else, opened without
//!   following a link; one that is not (another user made it first, it is a link, others
//!   may enter it) is not used, and loads fall back to sealed copies;
//! - a copy is named by what identifies the plugin file's contents: device, inode, size,
//!   modification and change times (nobody but root can set a change time, and every write
//!   moves it), so a plugin file that changed in any way gets a new copy;
//! - a copy is used only if it is a regular file of this user's, with one link, that no one
//!   may write (mode `0400`), of the plugin file's size, whose provenance is the very record
//!   that was verified; it is made under a name of its own, with `O_EXCL`, and renamed into
//!   place only once whole and checked, so no one ever finds half a copy;
//! - the store is bounded: at most [`MAX_COPIES`] copies and [`MAX_BYTES`] in all (the
//!   oldest go first), no copy of a file above [`MAX_COPY`], and at most [`MAX_LISTED`]
//!   entries read when trimming it.
//!
//! A copy's layout check is remembered by a mark, an empty file named by the host's build
//! ID ([`crate::build_id`]) and the copy's inode and change time
//! ([`Store::layout_mark`]): a later load of that very copy by that build of the host skips
//! `abi_stable`'s layout check of its root module. Marks go when their copy goes; at most
//! [`MAX_MARKS`] are kept.
//!
//! What it cannot tell: a copy changed by this same user (who may make it writable again).
//! A process of the host's own user can change the host's memory as easily; the store
//! guards against accidents and other users, as sealed copies do, and a plugin the lock
//! lists or whose signature is checked is still loaded from the copy that was hashed.

use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The most copies a store keeps.
pub const MAX_COPIES: usize = 256;
/// The most bytes of copies a store keeps.
pub const MAX_BYTES: u64 = 1 << 30;
/// The largest plugin file a store keeps a copy of (a larger one gets a sealed copy).
pub const MAX_COPY: u64 = 64 << 20;
/// The most entries read from the store's directory when it is trimmed.
pub const MAX_LISTED: usize = 4096;
/// The most layout marks a store keeps (see [`Store::layout_mark`]): a few host builds'
/// worth for each copy.
pub const MAX_MARKS: usize = 4 * MAX_COPIES;
/// How many copies (or marks) a process makes between two trims of the store (past its
/// first).
const TRIM_EVERY: u64 = 32;
/// What a layout mark's name begins with.
const MARK: &str = "checked-";
/// How long a copy being made may lie under its temporary name before a trim removes it (a
/// process that died while copying).
const STALE_PARTIAL: Duration = Duration::from_secs(60);

/// How many copies this process has begun to make (see [`Store::trim_after`]).
static MADE_COPIES: AtomicU64 = AtomicU64::new(0);

/// A copy made under a name of its own by [`Store::prepare`], not yet in place: removed when
/// dropped, unless [`Store::commit`] put it in place.
#[derive(Debug)]
pub(crate) struct Partial {
    store: Store,
    /// Its name while it is made (empty once in place).
    partial: String,
    /// The name it goes in under.
    name: String,
    file: File,
    len: u64,
}

impl Partial {
    /// The name it goes in under.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let _ = self.store.unlink(&self.partial);
        }
    }
}

/// An open store of kept copies.
#[derive(Debug)]
pub(crate) struct Store {
    dir: File,
    path: PathBuf,
}

impl Store {
    /// The store in `dir` (made when missing, as its parent allows): this user's, with no
    /// access for anyone else; an error saying why it cannot be used otherwise.
    pub(crate) fn open(dir: &Path) -> io::Result<Store> {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let c_path = c_path(dir)?;
        // SAFETY: a NUL-terminated path; the flags are valid; the result is checked.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    io::Error::other(format!("{} is not a directory (a link?)", dir.display()))
                }
                _ => e,
            });
        }
        // SAFETY: `fd` was just opened for us and is owned by nothing else.
        let opened = unsafe { File::from_raw_fd(fd) };
        let meta = opened.metadata()?;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to user {}, not to this process's user",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "others than its owner may use {} (mode {:o}): make it mode 700",
                    dir.display(),
                    meta.mode() & 0o7777
                ),
            ));
        }
        Ok(Store {
            dir: opened,
            path: dir.to_owned(),
        })
    }

    /// Where this user's store is unless the application names one:
    /// `$XDG_RUNTIME_DIR/plugin-host-copies` (the user's own, in memory), else
    /// `/dev/shm/plugin-host-copies-UID`.
    pub(crate) fn default_dir() -> PathBuf {
        match runtime_dir_named() {
            Some(dir) => dir.join("plugin-host-copies"),
            None => {
                // SAFETY: `geteuid` has no preconditions and cannot fail.
                let me = unsafe { libc::geteuid() };
                PathBuf::from(format!("/dev/shm/plugin-host-copies-{me}"))
            }
        }
    }

    /// Whether a copy of `len` bytes may go in ([`leaves_room`]): a `tmpfs` is memory, and a
    /// store must not fill the one other programs use.
    fn room_for(&self, len: u64) -> io::Result<()> {
        // SAFETY: an all-zero `statvfs` is a valid value for `fstatvfs` to fill.
        let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is an open descriptor and `fs` a valid place to write; the result
        // is checked.
        if unsafe { libc::fstatvfs(self.dir.as_raw_fd(), &mut fs) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // 32 bits wide on some targets, 64 here.
        #[allow(clippy::useless_conversion)]
        let unit = u64::from(fs.f_frsize);
        #[allow(clippy::useless_conversion)]
        let (available, size) = (
            u64::from(fs.f_bavail).saturating_mul(unit),
            u64::from(fs.f_blocks).saturating_mul(unit),
        );
        if leaves_room(available, size, len) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "a copy of {len} bytes would leave less than a quarter of its file system \
                     free, and less than {MAX_BYTES} bytes ({available} of {size} bytes are)"
                ),
            ))
        }
    }

    /// The store's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the copy of a file whose `fstat` is `meta`.
    pub(crate) fn name_for(meta: &Metadata) -> String {
        format!(
            "{:x}-{:x}-{:x}-{:x}.{:x}-{:x}.{:x}",
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }

    /// The kept copy named `name`, with its `fstat`, if there is one this store may use for
    /// a file of `len` bytes (see the [module](self)); its provenance is for the caller to
    /// check.
    pub(crate) fn find(&self, name: &str, len: u64) -> Option<(File, Metadata)> {
        let file = self.open_at(name, libc::O_RDONLY).ok()?;
        let meta = file.metadata().ok()?;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let usable = meta.is_file()
            && meta.uid() == me
            && meta.mode() & 0o7777 == 0o400
            && meta.nlink() == 1
            && meta.len() == len;
        usable.then_some((file, meta))
    }

    /// The name of the mark saying that the host build `host` (see [`host_build`]) found the
    /// layout of the copy `name`, whose `fstat` is `copy`, to be the one it expects: bound to
    /// that very copy (inode and change time), not only to its name.
    pub(crate) fn layout_mark(host: &str, name: &str, copy: &Metadata) -> Option<String> {
        let mark = format!("{MARK}{host}-{}", copy_identity(name, copy));
        // One component a file system takes.
        (mark.len() <= 255).then_some(mark)
    }

    /// Whether the mark `mark` is in the store: a regular file of this user's (never a
    /// link).
    pub(crate) fn is_marked(&self, mark: &str) -> bool {
        let Ok(c_name) = c_name(OsStr::new(mark)) else {
            return false;
        };
        // SAFETY: an all-zero `stat` is a valid value for `fstatat` to fill.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is an open directory, `c_name` one NUL-terminated component, `stat`
        // a valid place to write; a link is not followed; the result is checked.
        let found = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } == 0;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        found && stat.st_mode & libc::S_IFMT == libc::S_IFREG && stat.st_uid == me
    }

    /// Puts the mark `mark` in the store (an empty file no one may write); one already there
    /// is left as it is.
    pub(crate) fn mark(&self, mark: &str) -> io::Result<()> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        if !mark.starts_with(MARK) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        match self.open_at(mark, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) {
            Ok(made) => made.set_permissions(std::fs::Permissions::from_mode(0o400))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e),
        }
        self.trim_after(MADE.fetch_add(1, Ordering::Relaxed) + 1);
        Ok(())
    }

    /// Trims the store after a process's first file of a kind (copy or mark) and every
    /// [`TRIM_EVERY`] after: reading the directory costs a call per entry. `made` counts
    /// the files of that kind this process made.
    fn trim_after(&self, made: u64) {
        if made == 1 || made % TRIM_EVERY == 0 {
            self.trim();
        }
    }

    /// Copies the `ranges` of the first `len` bytes of `from` into the store under `name`:
    /// `check` decides, given the whole copy, whether it goes in. The copy, open for
    /// reading, and its `fstat`, when it did.
    pub(crate) fn keep(
        &self,
        name: &str,
        from: &File,
        len: u64,
        ranges: &[(u64, u64)],
        check: impl FnOnce(&File) -> bool,
    ) -> io::Result<Option<(File, Metadata)>> {
        let partial = self.prepare(name, from, len, ranges, None)?;
        self.commit(partial, check)
    }

    /// The first half of [`Store::keep`]: the copy made under a name of its own, which no
    /// one looks for (`between`, when given, runs before each chunk copied). It goes in only
    /// by [`Store::commit`]; dropped, it is removed.
    pub(crate) fn prepare(
        &self,
        name: &str,
        from: &File,
        len: u64,
        ranges: &[(u64, u64)],
        between: Option<&dyn Fn()>,
    ) -> io::Result<Partial> {
        self.room_for(len)?;
        let store = self.try_clone()?;
        let partial = format!(
            ".partial-{}-{}-{name}",
            std::process::id(),
            MADE_COPIES.fetch_add(1, Ordering::Relaxed)
        );
        let file = self.open_at(
            &partial,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        )?;
        let made = Partial {
            store,
            partial,
            name: name.to_owned(),
            file,
            len,
        };
        crate::seal::copy_into(from, &made.file, len, ranges, between)?;

        // No one writes it from now on, this process included.
        made.file
            .set_permissions(std::fs::Permissions::from_mode(0o400))?;
        Ok(made)
    }

    /// The second half of [`Store::keep`]: `partial` put in place under its name if `check`
    /// passes (in the directory it was made in), removed otherwise. The copy, open for
    /// reading, and its `fstat`, when it went in.
    pub(crate) fn commit(
        &self,
        mut partial: Partial,
        check: impl FnOnce(&File) -> bool,
    ) -> io::Result<Option<(File, Metadata)>> {
        if !check(&partial.file) {
            return Ok(None);
        }
        partial.store.rename(&partial.partial, &partial.name)?;
        // In place: nothing to remove when it is dropped.
        partial.partial.clear();
        let (name, len) = (std::mem::take(&mut partial.name), partial.len);
        drop(partial);
        self.trim_after(MADE_COPIES.load(Ordering::Relaxed));
        // Opened again for reading only; another process may have renamed its own copy of
        // the same file over this one since: it is checked all the same by the caller.
        Ok(self.find(&name, len))
    }

    /// The same store, through a descriptor of its own.
    pub(crate) fn try_clone(&self) -> io::Result<Store> {
        Ok(Store {
            dir: self.dir.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Removes copies until at most [`MAX_COPIES`] of at most [`MAX_BYTES`] in all are left,
    /// the oldest first, partial copies left for [`STALE_PARTIAL`], the layout marks of
    /// copies no longer there (or there as another file), and the oldest marks past
    /// [`MAX_MARKS`]. Only regular files named as the store names them are removed; at most
    /// [`MAX_LISTED`] entries are read.
    pub(crate) fn trim(&self) {
        // Listed through the directory opened, not by its path: whatever was put at that
        // path since (a link to another directory) is not what is trimmed. Only names the
        // store gives are looked at, so a directory given as a store that holds other files
        // loses none of them.
        let listed = format!("/proc/self/fd/{}", self.dir.as_raw_fd());
        let Ok(entries) = std::fs::read_dir(listed) else {
            return;
        };
        let now = SystemTime::now();
        let mut copies = Vec::new();
        let mut marks = Vec::new();
        for entry in entries.take(MAX_LISTED).flatten() {
            let name = entry.file_name();
            let Some(kind) = name.to_str().and_then(kind_of) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(now);
            match kind {
                Kind::Partial => {
                    let age = now.duration_since(modified).unwrap_or_default();
                    if age > STALE_PARTIAL {
                        let _ = self.unlink_os(&name);
                    }
                }
                Kind::Mark => marks.push((modified, name)),
                Kind::Copy => copies.push((modified, meta.len(), name, meta)),
            }
        }
        let mut total = copies
            .iter()
            .fold(0u64, |sum, (_, len, _, _)| sum.saturating_add(*len));
        copies.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        let mut left = copies.len();
        let mut removed = 0;
        for (_, len, name, _) in &copies {
            if left <= MAX_COPIES && total <= MAX_BYTES {
                break;
            }
            if self.unlink_os(name).is_ok() {
                left -= 1;
                total = total.saturating_sub(*len);
            }
            removed += 1;
        }
        // A mark is kept only while the very copy it names is here.
        let live: std::collections::HashSet<String> = copies[removed..]
            .iter()
            .filter_map(|(_, _, name, meta)| Some(copy_identity(name.to_str()?, meta)))
            .collect();
        let (mut kept, gone): (Vec<_>, Vec<_>) = marks.into_iter().partition(|(_, mark)| {
            mark.to_str()
                .and_then(|mark| mark.strip_prefix(MARK))
                .and_then(|rest| rest.split_once('-'))
                .is_some_and(|(_, copy)| live.contains(copy))
        });
        for (_, mark) in gone {
            let _ = self.unlink_os(&mark);
        }
        if kept.len() > MAX_MARKS {
            kept.sort();
            for (_, mark) in &kept[..kept.len() - MAX_MARKS] {
                let _ = self.unlink_os(mark);
            }
        }
    }

    fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c_name = c_name(OsStr::new(name))?;
        // SAFETY: `dir` is an open directory, `c_name` one NUL-terminated component; the
        // flags never follow a link, nor block; the result is checked.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened for us and is owned by nothing else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(OsStr::new(from))?, c_name(OsStr::new(to))?);
        let dir = self.dir.as_raw_fd();
        // SAFETY: two NUL-terminated components of the open directory `dir`.
        if unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unlink(&self, name: &str) -> io::Result<()> {
        self.unlink_os(OsStr::new(name))
    }

    fn unlink_os(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: a NUL-terminated component of the open directory; not a directory.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The kinds of file a store holds.
enum Kind {
    Copy,
    Partial,
    Mark,
}

/// The kind of file the store named `name`, if it is one of the store's names.
fn kind_of(name: &str) -> Option<Kind> {
    let hex = |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let hex_dot_hex = |s: &str| s.split_once('.').is_some_and(|(a, b)| hex(a) && hex(b));
    // `name_for`: device, inode, size, then two times as seconds.nanoseconds.
    let copy = |s: &str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 5
            && parts[..3].iter().all(|p| hex(p))
            && parts[3..].iter().all(|p| hex_dot_hex(p))
    };
    if let Some(rest) = name.strip_prefix(".partial-") {
        // `.partial-PID-N-NAME`
        let mut parts = rest.splitn(3, '-');
        let (pid, n, copy_name) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        return (digits(pid) && digits(n) && copy(copy_name)).then_some(Kind::Partial);
    }
    if let Some(rest) = name.strip_prefix(MARK) {
        // `checked-HOST-NAME-INODE.SECONDS.NANOSECONDS`
        let (host, rest) = rest.split_once('-')?;
        let (copy_name, identity) = rest.rsplit_once('-')?;
        let host_ok = host
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
        let identity_ok = identity.split('.').count() == 3 && identity.split('.').all(hex);
        return (host_ok && copy(copy_name) && identity_ok).then_some(Kind::Mark);
    }
    copy(name).then_some(Kind::Copy)
}

/// A copy's name and what tells that very file from another one of that name: its inode
/// and change time.
fn copy_identity(name: &str, meta: &Metadata) -> String {
    format!(
        "{name}-{:x}.{:x}.{:x}",
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// One component of a name in the store: no `/`, no NUL.
/// Whether a copy of `len` bytes may be written to a file system with `available` of its
/// `size` bytes free: if at least [`MAX_BYTES`] stay free after it (a store never holds more,
/// so it cannot be what fills the file system), or at least a quarter of its room does (a
/// small one, such as a `tmpfs` of a few hundred MiB).
fn leaves_room(available: u64, size: u64, len: u64) -> bool {
    available
        .checked_sub(len)
        .is_some_and(|after| after >= MAX_BYTES || after >= size / 4)
}

/// `$XDG_RUNTIME_DIR`, when it is an absolute path; without a trailing `/` (which would
/// have a link in its last component followed).
fn runtime_dir_named() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|dir| Path::new(&dir).components().collect::<PathBuf>())
        .filter(|dir| dir.is_absolute())
}

/// `$XDG_RUNTIME_DIR`, when it is a private directory of this process's user: absolute,
/// not a link, this user's, and no one else may write in it (what the XDG Base Directory
/// specification requires of it; a `sudo -E` shell's names another user's).
pub(crate) fn private_runtime_dir() -> Option<PathBuf> {
    let dir = runtime_dir_named()?;
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    (meta.is_dir() && meta.uid() == me && meta.mode() & 0o022 == 0).then_some(dir)
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.contains(&b'/') || bytes.is_empty() || bytes == b"." || bytes == b".." {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn private(dir: &Path) -> PathBuf {
        let store = dir.join("store");
        fs::create_dir(&store).unwrap();
        fs::set_permissions(&store, fs::Permissions::from_mode(0o700)).unwrap();
        store
    }

    fn kept(store: &Path, name: &str, bytes: &[u8], mode: u32) {
        let path = store.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_store_not_this_users_alone_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        // Made when missing, with no access for others; or found so.
        let made = dir.path().join("made");
        Store::open(&made).unwrap();
        let mode = fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        Store::open(&made).unwrap();

        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        for mode in [0o755, 0o710, 0o701, 0o770] {
            fs::set_permissions(&open, fs::Permissions::from_mode(mode)).unwrap();
            let e = Store::open(&open).unwrap_err().to_string();
            assert!(
                e.contains("others than its owner") && e.contains("mode 700"),
                "{e}"
            );
        }
        // A link to a private directory is not followed.
        let link = dir.path().join("link");
        symlink(&made, &link).unwrap();
        let e = Store::open(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        // A file is not a store.
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(Store::open(&file).is_err());
        // Another user's directory, though private (as root: given away).
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&made, Some(65534), Some(65534)).unwrap();
            let e = Store::open(&made).unwrap_err().to_string();
            assert!(e.contains("belongs to user 65534"), "{e}");
        }
    }

    #[test]
    fn a_copy_goes_in_only_if_a_quarter_of_the_file_system_stays_free() {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        // A small file system (a tmpfs): a quarter of it stays free.
        assert!(leaves_room(100 * MIB, 100 * MIB, 75 * MIB));
        assert!(!leaves_room(100 * MIB, 100 * MIB, 75 * MIB + 1));
        assert!(leaves_room(30 * MIB, 100 * MIB, 5 * MIB));
        assert!(!leaves_room(30 * MIB, 100 * MIB, 6 * MIB));
        assert!(
            !leaves_room(20 * MIB, 100 * MIB, 0),
            "already under a quarter"
        );
        // A large one: what the store could ever hold stays free, under a quarter or not.
        assert!(leaves_room(60 * GIB, 252 * GIB, 28));
        assert!(leaves_room(GIB + MIB, 252 * GIB, MIB));
        assert!(!leaves_room(GIB + MIB, 252 * GIB, MIB + 1));
        assert!(!leaves_room(MIB, 0, 2 * MIB), "more than is free");
        assert!(!leaves_room(u64::MAX, u64::MAX, u64::MAX));

        // The store asks its file system before it writes anything.
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        let from = File::open(dir.path()).unwrap();
        let e = store
            .keep("big", &from, u64::MAX / 2, &[], |_| true)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
        assert!(e.to_string().contains("less than a quarter"), "{e}");
        assert_eq!(
            fs::read_dir(&path).unwrap().count(),
            0,
            "nothing left behind"
        );
    }

    #[test]
    fn a_copy_made_in_two_halves_goes_in_only_when_committed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        let from = dir.path().join("plugin");
        fs::write(&from, b"headers.....segment").unwrap();
        let file = File::open(&from).unwrap();
        let len = file.metadata().unwrap().len();
        let listed = || {
            let mut names: Vec<String> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        // Made, then dropped (its file refused): nothing left.
        let calls = std::cell::Cell::new(0);
        let between = || calls.set(calls.get() + 1);
        let partial = store
            .prepare("dropped", &file, len, &[(0, len)], Some(&between))
            .unwrap();
        assert!(calls.get() >= 1, "`between` ran before the chunk");
        assert_eq!(listed().len(), 1, "only the partial copy: {:?}", listed());
        assert!(listed()[0].starts_with(".partial-"));
        assert!(store.find("dropped", len).is_none());
        drop(partial);
        assert!(listed().is_empty(), "{:?}", listed());
        // Committed, but its check fails: nothing left.
        let partial = store
            .prepare("refused", &file, len, &[(0, len)], None)
            .unwrap();
        assert!(store.commit(partial, |_| false).unwrap().is_none());
        assert!(listed().is_empty(), "{:?}", listed());
        // Committed and checked: in place under its name, found.
        let partial = store
            .prepare("kept", &file, len, &[(0, len)], None)
            .unwrap();
        let (copy, meta) = store.commit(partial, |_| true).unwrap().unwrap();
        assert_eq!(listed(), ["kept"]);
        assert_eq!(copy.metadata().unwrap().ino(), meta.ino());
        assert_eq!(fs::read(path.join("kept")).unwrap(), b"headers.....segment");
    }

    #[test]
    fn only_a_copy_no_one_may_write_with_one_link_and_the_size_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        kept(&path, "good", b"12345", 0o400);
        assert!(store.find("good", 5).is_some());
        assert!(store.find("good", 6).is_none(), "another size");
        assert!(store.find("absent", 5).is_none());
        for (name, mode) in [("writable", 0o600), ("readable", 0o440), ("exec", 0o500)] {
            kept(&path, name, b"12345", mode);
            assert!(store.find(name, 5).is_none(), "{name}");
        }
        // A second link: someone could reach it by another name.
        kept(&path, "linked", b"12345", 0o400);
        fs::hard_link(path.join("linked"), dir.path().join("elsewhere")).unwrap();
        assert!(store.find("linked", 5).is_none());
        // A link to a good copy is not followed.
        symlink(path.join("good"), path.join("symlink")).unwrap();
        assert!(store.find("symlink", 5).is_none());
        // Names are one component.
        assert!(store.find("../store/good", 5).is_none());
        // Another user's copy (as root: given away).
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(path.join("good"), Some(65534), None).unwrap();
            assert!(store.find("good", 5).is_none());
        }
    }

    #[test]
    fn a_copy_is_kept_whole_and_checked_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        let from = dir.path().join("plugin");
        fs::write(&from, b"headers.....segment.....tail").unwrap();
        let file = File::open(&from).unwrap();
        let len = file.metadata().unwrap().len();
        // Refused by its check: nothing left behind, not even the partial copy.
        let none = store.keep("refused", &file, len, &[(0, len)], |_| false);
        assert!(none.unwrap().is_none());
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
        // Kept: the ranges copied, the rest zeros, no one may write it, found again.
        let copy = store
            .keep("kept", &file, len, &[(0, 7), (12, 7)], |copy| {
                copy.metadata().unwrap().permissions().mode() & 0o777 == 0o400
            })
            .unwrap()
            .unwrap();
        let bytes = fs::read(path.join("kept")).unwrap();
        assert_eq!(&bytes[..], b"headers\0\0\0\0\0segment\0\0\0\0\0\0\0\0\0");
        assert_eq!(copy.0.metadata().unwrap().ino(), copy.1.ino());
        assert_eq!(copy.1.ino(), fs::metadata(path.join("kept")).unwrap().ino());
        assert!(store.find("kept", len).is_some());
        let names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["kept"]);
    }

    /// A name of the form `Store::name_for` gives.
    const COPY: &str = "801-1a2b-5-6757a1b2.1f-6757a1b2.2e";

    #[test]
    fn a_layout_mark_names_one_copy_for_one_host_build_and_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        kept(&path, COPY, b"12345", 0o400);
        let meta = fs::metadata(path.join(COPY)).unwrap();
        let mark = Store::layout_mark("ab12", COPY, &meta).unwrap();
        assert!(!store.is_marked(&mark));
        store.mark(&mark).unwrap();
        assert!(store.is_marked(&mark));
        assert_eq!(
            fs::metadata(path.join(&mark)).unwrap().permissions().mode() & 0o7777,
            0o400
        );
        // Marked again: no error, still one mark.
        store.mark(&mark).unwrap();
        // Another build of the host, or another file under the copy's name, is not marked.
        assert!(!store.is_marked(&Store::layout_mark("cd34", COPY, &meta).unwrap()));
        // (Made before the first goes, so that it cannot have its inode.)
        kept(&path, "new", b"12345", 0o400);
        fs::rename(path.join("new"), path.join(COPY)).unwrap();
        let again = fs::metadata(path.join(COPY)).unwrap();
        let new_mark = Store::layout_mark("ab12", COPY, &again).unwrap();
        assert_ne!(new_mark, mark);
        assert!(!store.is_marked(&new_mark));
        // Only a mark of this store's kind is made, and a mark that is a link or no regular
        // file does not count.
        assert!(store.mark(COPY).is_err());
        symlink(path.join(&mark), path.join(&new_mark)).unwrap();
        assert!(!store.is_marked(&new_mark));
        fs::remove_file(path.join(&new_mark)).unwrap();
        fs::create_dir(path.join(&new_mark)).unwrap();
        assert!(!store.is_marked(&new_mark));
        fs::remove_dir(path.join(&new_mark)).unwrap();
        // Another user's mark (as root: given away).
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            store.mark(&new_mark).unwrap();
            std::os::unix::fs::chown(path.join(&new_mark), Some(65534), None).unwrap();
            assert!(!store.is_marked(&new_mark));
            fs::remove_file(path.join(&new_mark)).unwrap();
        }
        // A trim keeps the marks of the copy there, and removes those of the copy that was
        // there before under its name.
        store.mark(&new_mark).unwrap();
        store.trim();
        assert!(store.is_marked(&new_mark));
        assert!(!path.join(&mark).exists(), "the old copy's mark stayed");
        // Once the copy goes, its marks go.
        fs::remove_file(path.join(COPY)).unwrap();
        store.trim();
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
    }

    #[test]
    fn a_trim_reads_the_directory_opened_not_what_its_path_leads_to_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        kept(&path, COPY, b"x", 0o400);
        // The store moved away, a link to a full directory of copy names put in its place.
        let moved = dir.path().join("moved");
        fs::rename(&path, &moved).unwrap();
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        for i in 0..MAX_COPIES + 5 {
            kept(&other, &format!("1-{i:04x}-1-0.0-0.0"), b"x", 0o400);
        }
        kept(&other, COPY, b"x", 0o400);
        symlink(&other, &path).unwrap();
        store.trim();
        assert_eq!(fs::read_dir(&other).unwrap().count(), MAX_COPIES + 6);
        assert!(
            moved.join(COPY).exists(),
            "a copy named in the other directory went"
        );
    }

    #[test]
    fn marks_past_the_most_a_store_keeps_go_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        kept(&path, COPY, b"x", 0o400);
        let meta = fs::metadata(path.join(COPY)).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..MAX_MARKS + 3 {
            let mark = Store::layout_mark(&format!("{i:04x}"), COPY, &meta).unwrap();
            kept(&path, &mark, b"", 0o400);
            if i < 3 {
                File::open(path.join(&mark))
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
            }
        }
        store.trim();
        assert_eq!(fs::read_dir(&path).unwrap().count(), MAX_MARKS + 1);
        for i in 0..MAX_MARKS + 3 {
            let mark = Store::layout_mark(&format!("{i:04x}"), COPY, &meta).unwrap();
            assert_eq!(store.is_marked(&mark), i >= 3, "{i}");
        }
    }

    #[test]
    fn a_full_store_loses_its_oldest_copies_and_stale_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path());
        let store = Store::open(&path).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..MAX_COPIES + 10 {
            let name = format!("1-{i:04x}-1-0.0-0.0");
            kept(&path, &name, b"x", 0o400);
            // The first ten are the oldest.
            let when = if i < 10 { old } else { SystemTime::now() };
            File::open(path.join(&name))
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        let stale = format!(".partial-1-0-{COPY}");
        kept(&path, &stale, b"x", 0o400);
        File::open(path.join(&stale))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = format!(".partial-1-1-{COPY}");
        kept(&path, &fresh, b"x", 0o400);
        // Files of other names are not the store's: never removed, however old.
        for other in [
            "notes.txt",
            "copy-0001",
            "checked-zz",
            ".partial-x",
            "1-2-3-4-5",
        ] {
            kept(&path, other, b"mine", 0o600);
            File::open(path.join(other))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        store.trim();
        let mut names: Vec<String> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let others = [
            "notes.txt",
            "copy-0001",
            "checked-zz",
            ".partial-x",
            "1-2-3-4-5",
        ];
        for other in others {
            assert!(names.iter().any(|n| n == other), "{other} was removed");
        }
        names.retain(|n| !others.contains(&n.as_str()));
        assert_eq!(names.len(), MAX_COPIES + 1);
        assert_eq!(names[0], fresh);
        assert_eq!(names[1], "1-000a-1-0.0-0.0");
        assert!(!names.contains(&stale));
    }
}
