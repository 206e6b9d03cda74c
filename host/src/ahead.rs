//! Copying ahead (Linux): while a scan verifies and loads one plugin, another thread makes
//! the sealed copy (see [`crate::seal`]) of the next, so that filling the copy — as long as
//! mapping the library, or longer — overlaps with loading instead of adding to it when a
//! core is free.
//!
//! A copy made ahead is made before its file is verified, so it is used only if it holds
//! exactly what was then verified: the same file (device and inode), unchanged from before
//! the copy began until after verification (size and modification time, as for a copy made
//! after verification), with the same provenance. Anything else, and the copy is dropped
//! and a new one made from the verified file as always. A file that cannot change (see
//! [`crate::seal::Unchangeable`]) is not copied at all.
//!
//! Bounds: the thread runs at most one file ahead of the one being loaded (a channel of
//! one), skips files the scan has already passed, and copies only regular files of at most
//! [`MAX_AHEAD`] bytes that hold a provenance record: nothing is executed, and the bytes of a
//! file the scan refuses are read once and dropped.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use crate::place::Verified;
use crate::read::{open_sized, read_sized};

/// The largest file copied ahead; larger ones are copied after verification.
pub(crate) const MAX_AHEAD: u64 = 64 << 20;

/// The copies made ahead for one scan's files, in order.
pub(crate) struct CopyAhead {
    copies: Receiver<(usize, Option<Copied>)>,
    /// The index of the file the scan is at: files before it are not copied any more.
    at: Arc<AtomicUsize>,
}

/// A sealed copy of a file, and what the file was while it was copied.
struct Copied {
    copy: File,
    meta: Metadata,
}

impl CopyAhead {
    /// Starts copying `paths` ahead (`None` when no thread can be started, or there is
    /// nothing to gain: fewer than two files).
    pub(crate) fn start(paths: &[PathBuf]) -> Option<CopyAhead> {
        if paths.len() < 2 {
            return None;
        }
        let paths = paths.to_vec();
        let at = Arc::new(AtomicUsize::new(0));
        let (sender, copies) = sync_channel(1);
        let passed = Arc::clone(&at);
        std::thread::Builder::new()
            .name("plugin-copy-ahead".into())
            .spawn(move || {
                for (i, path) in paths.iter().enumerate() {
                    // The scan is past it (refused, or copied by the scan itself): skip it.
                    let copied = (passed.load(Ordering::Relaxed) <= i)
                        .then(|| copy_of(path))
                        .flatten();
                    if sender.send((i, copied)).is_err() {
                        return; // the scan ended
                    }
                }
            })
            .ok()?;
        Some(CopyAhead { copies, at })
    }

    /// Tells the thread that the scan is at file `index`: the files before it are not copied.
    pub(crate) fn reached(&self, index: usize) {
        self.at.store(index, Ordering::Relaxed);
    }

    /// Hands the copy made of file `index` to `verified` when it holds what was verified.
    pub(crate) fn attach(&self, index: usize, path: &Path, verified: &mut Verified) {
        self.reached(index);
        if verified.sealed.is_some() {
            return; // the trust step's copy is the one loaded
        }
        let copied = loop {
            match self.copies.recv() {
                Ok((i, copied)) if i == index => break copied,
                Ok((i, _)) if i < index => continue, // a file the scan passed
                _ => return,                         // ahead of it, or the thread ended
            }
        };
        let Some(Copied { copy, meta }) = copied else {
            return;
        };
        let unchanged = |now: &Metadata| {
            (
                now.dev(),
                now.ino(),
                now.len(),
                now.mtime(),
                now.mtime_nsec(),
            ) == (
                meta.dev(),
                meta.ino(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
            )
        };
        let holds_verified = unchanged(&verified.meta)
            && verified.file.metadata().is_ok_and(|now| unchanged(&now))
            && read_sized(path, &copy, meta.len()).is_ok_and(|p| p == verified.provenance);
        if holds_verified {
            verified.ahead = Some(copy);
        }
    }
}

/// A sealed copy of the plugin file at `path` (`None`: not worth copying ahead, or it changed
/// while it was copied).
fn copy_of(path: &Path) -> Option<Copied> {
    let (file, meta) = open_sized(path).ok()?;
    if meta.len() > MAX_AHEAD || crate::seal::cannot_change(&file).is_some() {
        return None;
    }
    let provenance = read_sized(path, &file, meta.len()).ok()?;
    let len = meta.len();
    let info = crate::read::segments::load_info(&file, len).ok()?;
    let copy = crate::seal::sealed_copy(&provenance.name, &file, len, &info.ranges).ok()?;
    let after = file.metadata().ok()?;
    let same = (after.len(), after.mtime(), after.mtime_nsec())
        == (meta.len(), meta.mtime(), meta.mtime_nsec());
    same.then_some(Copied { copy, meta })
}
