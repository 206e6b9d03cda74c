//! Copying an untrusted source tree — a plugin crate, its workspace — to a scratch directory
//! or a build context.
//!
//! Nothing is read through a link and nothing but a regular file is read at all: the walk
//! uses `symlink_metadata`; a regular file is opened with `O_NOFOLLOW|O_NONBLOCK` and copied
//! only when `fstat` of the opened descriptor says it is a regular file of at most
//! [`MAX_FILE`] bytes (the whole copy at most [`MAX_TREE`]); a FIFO, a socket or a device is an
//! error naming it. A symbolic link is kept as a link when it stays inside the tree (see
//! `link_stays_inside`) and refused otherwise: a build sees only the copy, and a link out of
//! it would read this machine's files in a build here, or dangle in a container.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The largest file a copied tree may hold (sources, vendored crates and toolchain libraries
/// are far smaller).
pub const MAX_FILE: u64 = 1 << 30;

/// The most bytes a copied tree may hold in all.
pub const MAX_TREE: u64 = 8 << 30;

/// Why a tree could not be copied. Each names the entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Reading the source or writing the copy failed.
    #[error("{}: cannot copy: {source}", path.display())]
    Io {
        /// The entry.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A FIFO, a socket or a device: nothing a build reads, and reading one could block
    /// forever or never end.
    #[error("{}: {kind}, not a regular file, directory or symbolic link; it is not copied (a FIFO could block forever, a device never end): remove it from the tree", path.display())]
    Special {
        /// The entry.
        path: PathBuf,
        /// What it is (`a FIFO`, `a socket`, `a device`).
        kind: &'static str,
    },
    /// A symbolic link whose target is absolute or leads out of the tree.
    #[error("{}: a symbolic link to {}, outside {}; a build sees only a copy of that tree, so the link is refused: replace it by the file it leads to, or by a relative link inside the tree", path.display(), target.display(), root.display())]
    LinkOutside {
        /// The link.
        path: PathBuf,
        /// Its target, as written.
        target: PathBuf,
        /// The tree copied.
        root: PathBuf,
    },
    /// A file larger than [`MAX_FILE`], or a tree larger than [`MAX_TREE`].
    #[error("{}: {size} bytes would make the copy larger than {limit} bytes, the most accepted; remove it from the tree", path.display())]
    TooLarge {
        /// The entry.
        path: PathBuf,
        /// Its size (or the tree's so far).
        size: u64,
        /// The limit passed.
        limit: u64,
    },
}

impl CopyError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CopyError {
        let path = path.to_owned();
        move |source| CopyError::Io { path, source }
    }
}

/// Copies the tree `from` to `to` (created; `from` itself may be a link, nothing below it is
/// followed), keeping permission bits and links that stay inside; `skip(relative_path,
/// is_dir)` leaves an entry out. Stops at the first entry refused.
pub(crate) fn copy_tree(
    from: &Path,
    to: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> Result<(), CopyError> {
    let mut copied = 0;
    copy_below(from, to, Path::new(""), from, skip, &mut copied)
}

fn copy_below(
    from: &Path,
    to: &Path,
    relative: &Path,
    root: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
    copied: &mut u64,
) -> Result<(), CopyError> {
    fs::create_dir_all(to).map_err(CopyError::io(to))?;
    let mut entries: Vec<_> = fs::read_dir(from)
        .map_err(CopyError::io(from))?
        .collect::<Result<_, _>>()
        .map_err(CopyError::io(from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let source = entry.path();
        let target = to.join(entry.file_name());
        let rel = relative.join(entry.file_name());
        // Of the entry itself (lstat), not of what a link leads to.
        let kind = fs::symlink_metadata(&source)
            .map_err(CopyError::io(&source))?
            .file_type();
        if skip(&rel, kind.is_dir()) {
            continue;
        }
        if kind.is_symlink() {
            let link = fs::read_link(&source).map_err(CopyError::io(&source))?;
            if !link_stays_inside(&rel, &link) {
                return Err(CopyError::LinkOutside {
                    path: source,
                    target: link,
                    root: root.to_owned(),
                });
            }
            std::os::unix::fs::symlink(&link, &target).map_err(CopyError::io(&target))?;
        } else if kind.is_dir() {
            copy_below(&source, &target, &rel, root, skip, copied)?;
        } else if kind.is_file() {
            copy_file(&source, &target, copied)?;
        } else {
            return Err(CopyError::Special {
                path: source,
                kind: host::small_file::kind_of(&kind),
            });
        }
    }
    Ok(())
}

/// Copies the regular file `source` to the new file `target`: opened without following a
/// link or blocking, checked by `fstat` on the descriptor, read up to its limit.
fn copy_file(source: &Path, target: &Path, copied: &mut u64) -> Result<(), CopyError> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(source)
        // A link put there since the walk saw a regular file: ELOOP, an error.
        .map_err(CopyError::io(source))?;
    let meta = file.metadata().map_err(CopyError::io(source))?;
    if !meta.is_file() {
        return Err(CopyError::Special {
            path: source.to_owned(),
            kind: host::small_file::kind_of(&meta.file_type()),
        });
    }
    check_size(source, meta.len(), *copied)?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.permissions().mode() & 0o777)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(target)
        .map_err(CopyError::io(target))?;
    let mut buffer = vec![0; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(CopyError::io(source))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        // It may grow while it is read.
        check_size(source, size, *copied)?;
        out.write_all(&buffer[..n]).map_err(CopyError::io(target))?;
    }
    // The mode asked for at creation is masked by the umask; keep the source's bits.
    out.set_permissions(fs::Permissions::from_mode(
        meta.permissions().mode() & 0o777,
    ))
    .map_err(CopyError::io(target))?;
    *copied += size;
    Ok(())
}

fn check_size(path: &Path, size: u64, copied: u64) -> Result<(), CopyError> {
    if size > MAX_FILE {
        return Err(CopyError::TooLarge {
            path: path.to_owned(),
            size,
            limit: MAX_FILE,
        });
    }
    if copied + size > MAX_TREE {
        return Err(CopyError::TooLarge {
            path: path.to_owned(),
            size: copied + size,
            limit: MAX_TREE,
        });
    }
    Ok(())
}

/// Whether the link at `relative` (a path inside the tree, of no links) with the target
/// `link` stays inside the tree however it is resolved: relative, its `..` components all at
/// its start and no more of them than the link's directory is deep, then names only. Each
/// link kept is checked so; a name in the target that is itself a link is then one of them,
/// so following any chain of kept links never leaves the tree. (`a/../b`, a `..` after a
/// name, is refused: that name could be a link to somewhere else.)
pub(crate) fn link_stays_inside(relative: &Path, link: &Path) -> bool {
    let depth = relative.components().count().saturating_sub(1);
    let mut ups = 0;
    let mut named = false;
    for component in link.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if !named => ups += 1,
            Component::Normal(_) => named = true,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    ups <= depth && link.as_os_str() != ""
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path, alive for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// A minimal crate tree in `dir/src`.
    fn crate_tree(dir: &Path) -> PathBuf {
        let src = dir.join("src");
        fs::create_dir_all(src.join("src/nested")).unwrap();
        fs::write(src.join("Cargo.toml"), "[package]\nname = \"p\"\n").unwrap();
        fs::write(src.join("src/lib.rs"), "//! p\n").unwrap();
        fs::write(src.join("src/nested/x.rs"), "").unwrap();
        fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::create_dir(src.join("target")).unwrap();
        fs::write(src.join("target/big"), "skipped").unwrap();
        src
    }

    fn refused(src: &Path, to: &Path) -> String {
        copy_tree(src, to, &|_, _| false)
            .expect_err("copied")
            .to_string()
    }

    #[test]
    fn a_regular_tree_is_copied_with_its_modes_and_inside_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = crate_tree(dir.path());
        symlink("../Cargo.toml", src.join("src/manifest")).unwrap();
        symlink("nested/x.rs", src.join("src/y.rs")).unwrap();
        let to = dir.path().join("copy");
        copy_tree(&src, &to, &|rel, is_dir| {
            is_dir && rel == Path::new("target")
        })
        .unwrap();
        assert_eq!(
            fs::read_to_string(to.join("src/lib.rs")).unwrap(),
            "//! p\n"
        );
        assert!(to.join("src/nested/x.rs").is_file());
        assert!(!to.join("target").exists(), "skipped");
        let mode = fs::metadata(to.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            fs::read_link(to.join("src/manifest")).unwrap(),
            Path::new("../Cargo.toml")
        );
        assert!(fs::symlink_metadata(to.join("src/y.rs"))
            .unwrap()
            .is_symlink());
        assert!(
            to.join("src/manifest").is_file(),
            "resolves inside the copy"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let src = crate_tree(dir.path());
        mkfifo(&src.join("src/pipe"));
        let e = refused(&src, &dir.path().join("copy"));
        assert!(e.contains("src/pipe: a FIFO, not a regular file"), "{e}");
        assert!(e.contains("remove it"), "{e}");
    }

    #[test]
    fn links_out_of_the_tree_are_refused_and_nothing_behind_them_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src = crate_tree(dir.path());
        fs::write(dir.path().join("secret"), "host file").unwrap();
        for (i, (name, target)) in [
            ("root", "/"),
            ("zero", "/dev/zero"),
            ("up", "../secret"),
            ("src/up", "../../secret"),
            ("src/through", "nested/../../../secret"),
        ]
        .into_iter()
        .enumerate()
        {
            let link = src.join(name);
            symlink(target, &link).unwrap();
            let to = dir.path().join(format!("copy{i}"));
            let e = refused(&src, &to);
            assert!(
                e.contains(&format!("{name}: a symbolic link to {target}, outside")),
                "{e}"
            );
            let copy = to.join(name);
            assert!(
                fs::symlink_metadata(&copy).is_err(),
                "{name}: {} was made",
                copy.display()
            );
            fs::remove_file(&link).unwrap();
        }
    }

    #[test]
    fn a_device_reached_without_a_link_is_refused() {
        // Making a device node in a tree needs privileges: /dev/zero stands for one.
        let e = copy_file(Path::new("/dev/zero"), Path::new("/nonexistent/x"), &mut 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero: a device"), "{e}");
    }

    #[test]
    fn which_links_stay_inside() {
        let inside = |rel: &str, link: &str| link_stays_inside(Path::new(rel), Path::new(link));
        assert!(inside("README.md", "doc/README.md"));
        assert!(inside("member/README.md", "../README.md"));
        assert!(inside("a/b/c", "./../../x/y"));
        assert!(!inside("README.md", "../README.md"));
        assert!(!inside("a/b", "../../x"));
        assert!(!inside("a/b", "/etc/passwd"));
        assert!(!inside("a/b", "x/../y"));
        assert!(!inside("a/b", ""));
    }
}
