//! Copying ahead (Linux): while a scan verifies and loads one plugin, another thread makes
//! the sealed copy (see [`crate::seal`]) of the next, so that filling the copy — as long as
//! mapping the library, or longer — overlaps with loading instead of adding to it when a
//! core is free. With kept copies ([`crate::LoadFrom::KeptCopy`]) it makes the next file's
//! kept copy in the store, under a name of its own that no load looks for
//! ([`crate::store::Store::prepare`]): the mapper puts it in place only once the file is
//! verified and the copy checked to hold what was, and it is removed otherwise — a file the
//! scan refuses leaves nothing in the store. A file already kept is not copied.
//!
//! A copy made ahead is made before its file is verified, so it is used only if it holds
//! exactly what was then verified: the same file (device and inode), unchanged from before
//! the copy began until after verification (size and modification time, as for a copy made
//! after verification), with the same provenance. Anything else, and the copy is dropped
//! and a new one made from the verified file as always. A file that cannot change (see
//! [`crate::seal::Unchangeable`]) is not copied at all, and the scan does not wait for the
//! thread to pass it.
//!
//! The thread starts at the first file that needs a copy, from the file after it: a scan of
//! files that need none (immutable, fs-verity, a read-only file system) starts no thread
//! and hands nothing between threads.
//!
//! Bounds: the thread runs at most one file ahead of the one being loaded (a channel of
//! one), skips files the scan has already passed, and copies only regular files of at most
//! [`MAX_AHEAD`] bytes that hold a provenance record: nothing is executed, and the bytes of a
//! file the scan refuses are read once and dropped.

use std::cell::{OnceCell, RefCell};
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::place::Verified;
use crate::read::{open_sized, read_sized};

/// Holds the copying thread still while the scan's thread maps a library.
///
/// Every copy-on-write fault of the loader's relocations, and every `mprotect` and `munmap`
/// it makes, must flush the other CPUs' TLBs of this process's address space — by an
/// interrupt to each CPU running a thread of it, waited for. The copying thread is one; on a
/// virtual machine each such interrupt costs an exit to the hypervisor. Held still (asleep)
/// while the loader maps, its CPU is out of the way; it copies again once the library is
/// mapped, while its layout is checked and it registers.
#[derive(Default)]
struct Pause {
    paused: Mutex<bool>,
    resumed: Condvar,
}

impl Pause {
    fn set(&self, paused: bool) {
        *self.paused.lock().unwrap_or_else(PoisonError::into_inner) = paused;
        if !paused {
            self.resumed.notify_one();
        }
    }

    /// Waits while the scan's thread is mapping.
    fn wait(&self) {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            self.resumed
                .wait_while(paused, |paused| *paused)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

thread_local! {
    /// The pause of the copying thread of the scan running on this thread, if any.
    static SCANNING: RefCell<Option<Arc<Pause>>> = const { RefCell::new(None) };
}

/// Runs `map` — the dynamic loader mapping a library — with the copying thread of this
/// thread's scan, if there is one, held still (see [`Pause`]).
pub(crate) fn quietly<T>(map: impl FnOnce() -> T) -> T {
    let Some(pause) = SCANNING.with(|s| s.borrow().clone()) else {
        return map();
    };
    /// Lets the copying thread go on however `map` ends.
    struct Resume(Arc<Pause>);
    impl Drop for Resume {
        fn drop(&mut self) {
            self.0.set(false);
        }
    }
    pause.set(true);
    let _resume = Resume(pause);
    map()
}

/// The largest file copied ahead; larger ones are copied after verification.
pub(crate) const MAX_AHEAD: u64 = 64 << 20;

/// The copies made ahead for one scan's files, in order.
pub(crate) struct CopyAhead {
    paths: Arc<[PathBuf]>,
    /// Where kept copies go ([`crate::LoadFrom::KeptCopy`]); `None`: sealed copies.
    store: Option<PathBuf>,
    /// That store, opened by the scan's thread to tell whether a file's copy is kept
    /// already, until the copying thread starts; that thread makes its copies in it (through
    /// a descriptor of its own), not in whatever the path leads to by then.
    kept: OnceCell<Option<crate::store::Store>>,
    /// The thread, once a file needed a copy (`None` inside: it could not be started).
    running: OnceCell<Option<Running>>,
}

/// The thread making the copies, from the file after the first that needed one.
struct Running {
    copies: Receiver<(usize, Option<Copied>)>,
    /// The index of the file the scan is at: files before it are not copied any more.
    at: Arc<AtomicUsize>,
    /// What this thread's [`SCANNING`] was before the thread started: put back when the
    /// scan ends.
    before: Option<Arc<Pause>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let before = self.before.take();
        SCANNING.with(|s| *s.borrow_mut() = before);
    }
}

/// A copy of a file, and what the file was while it was copied.
struct Copied {
    copy: Made,
    meta: Metadata,
}

/// A sealed copy, or a kept one not yet in place (put in place only once its file is
/// verified and the copy checked to hold what was: a file the scan refuses leaves nothing in
/// the store).
enum Made {
    Sealed(File),
    Kept(crate::store::Partial),
}

impl CopyAhead {
    /// Copies `paths` ahead once one of them needs a copy (`None`: nothing to gain, fewer
    /// than two files).
    /// `store`: the directory of the store kept copies go in, when they are kept.
    pub(crate) fn start(paths: &[PathBuf], store: Option<PathBuf>) -> Option<CopyAhead> {
        (paths.len() >= 2).then(|| CopyAhead {
            paths: paths.into(),
            store,
            kept: OnceCell::new(),
            running: OnceCell::new(),
        })
    }

    /// The thread, when it was running before file `index` asked for it; else it is
    /// started now, from the file after `index` (and `None`: it has nothing for `index`).
    fn running(&self, index: usize) -> Option<&Running> {
        if let Some(running) = self.running.get() {
            return running.as_ref();
        }
        let _ = self.running.set(self.spawn(index + 1));
        None
    }

    /// A thread copying the files from `from` on (`None`: none left, or no thread).
    fn spawn(&self, from: usize) -> Option<Running> {
        if from >= self.paths.len() {
            return None;
        }
        let paths = Arc::clone(&self.paths);
        let pause = Arc::new(Pause::default());
        let held = Arc::clone(&pause);
        let at = Arc::new(AtomicUsize::new(from - 1));
        let (sender, copies) = sync_channel(1);
        let passed = Arc::clone(&at);
        // Kept copies: the store the scan's thread opened to tell whether a copy is kept
        // already (one that cannot be used gets nothing made ahead).
        let store = self.store.as_ref().map(|_| {
            let kept = self.kept.get().and_then(Option::as_ref);
            kept.and_then(|store| store.try_clone().ok())
        });
        std::thread::Builder::new()
            .name("plugin-copy-ahead".into())
            .spawn(move || {
                for (i, path) in paths.iter().enumerate().skip(from) {
                    // The scan is past it (refused, or copied by the scan itself): skip it.
                    let copied = (passed.load(Ordering::Relaxed) <= i)
                        .then(|| match &store {
                            None => copy_of(path, &|| held.wait()),
                            Some(Some(store)) => kept_of(path, store, &|| held.wait()),
                            Some(None) => None,
                        })
                        .flatten();
                    if sender.send((i, copied)).is_err() {
                        return; // the scan ended
                    }
                }
            })
            .ok()?;
        let before = SCANNING.with(|s| s.borrow_mut().replace(pause));
        Some(Running { copies, at, before })
    }

    /// Tells the thread that the scan is at file `index`: the files before it are not copied.
    pub(crate) fn reached(&self, index: usize) {
        if let Some(Some(running)) = self.running.get() {
            running.at.store(index, Ordering::Relaxed);
        }
    }

    /// Hands the copy made of file `index` to `verified` when it holds what was verified.
    pub(crate) fn attach(&self, index: usize, path: &Path, verified: &mut Verified) {
        self.reached(index);
        if verified.sealed.is_some() {
            return; // the trust step's copy is the one loaded
        }
        // Mapped as it is, needing no copy (as the mapper checks again, right before it
        // maps it): nothing to wait for. What the thread sent about it, if anything, is
        // passed over at the next file that needs a copy.
        if crate::seal::cannot_change(&verified.file).is_some() {
            return;
        }
        // Kept copies: no thread while the files' copies are kept already (every start
        // after the first); it starts at the first file whose copy must be made.
        if let (Some(dir), None) = (&self.store, self.running.get()) {
            let kept = self
                .kept
                .get_or_init(|| crate::store::Store::open(dir).ok());
            let (name, len) = (
                crate::store::Store::name_for(&verified.meta),
                verified.meta.len(),
            );
            if kept
                .as_ref()
                .is_none_or(|store| store.find(&name, len).is_some())
            {
                return;
            }
        }
        let Some(running) = self.running(index) else {
            return;
        };
        let copied = loop {
            match running.copies.recv() {
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
        let file_unchanged =
            unchanged(&verified.meta) && verified.file.metadata().is_ok_and(|now| unchanged(&now));
        match copy {
            Made::Sealed(copy) => {
                if file_unchanged
                    && crate::read::holds_record(path, &copy, meta.len(), &verified.provenance)
                {
                    verified.ahead = Some(copy);
                }
            }
            // Checked to hold what was verified when the mapper puts it in place.
            Made::Kept(partial) => {
                if file_unchanged {
                    verified.kept_ahead = std::sync::Mutex::new(Some(partial));
                }
            }
        }
    }
}

/// A sealed copy of the plugin file at `path` (`None`: not worth copying ahead, or it changed
/// while it was copied).
fn copy_of(path: &Path, between: &dyn Fn()) -> Option<Copied> {
    let (file, meta) = open_sized(path).ok()?;
    if meta.len() > MAX_AHEAD || crate::seal::cannot_change(&file).is_some() {
        return None;
    }
    let provenance = read_sized(path, &file, meta.len()).ok()?;
    let len = meta.len();
    let info = crate::read::segments::load_info(&file, len).ok()?;
    let copy =
        crate::seal::sealed_copy_between(&provenance.name, &file, len, &info.ranges, between)
            .ok()?;
    let after = file.metadata().ok()?;
    crate::seal::same_contents(&meta, &after).then_some(Copied {
        copy: Made::Sealed(copy),
        meta,
    })
}

/// A kept copy of the plugin file at `path`, made in `store` under a name of its own
/// (`None`: kept already, not worth copying ahead, or it changed while it was copied).
fn kept_of(path: &Path, store: &crate::store::Store, between: &dyn Fn()) -> Option<Copied> {
    let (file, meta) = open_sized(path).ok()?;
    let len = meta.len();
    if len > MAX_AHEAD.min(crate::store::MAX_COPY) || crate::seal::cannot_change(&file).is_some() {
        return None;
    }
    let name = crate::store::Store::name_for(&meta);
    if store.find(&name, len).is_some() {
        return None; // the load finds it there, and checks it
    }
    // A plugin file's record, as for a sealed copy: nothing else is copied ahead.
    read_sized(path, &file, len).ok()?;
    let info = crate::read::segments::load_info(&file, len).ok()?;
    let partial = store
        .prepare(&name, &file, len, &info.ranges, Some(between))
        .ok()?;
    let after = file.metadata().ok()?;
    crate::seal::untouched(&meta, &after).then_some(Copied {
        copy: Made::Kept(partial),
        meta,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::Command;

    use super::*;

    /// `chattr +i` (needs root: `CAP_LINUX_IMMUTABLE`), undone when dropped.
    struct Immutable(PathBuf);

    impl Immutable {
        fn set(path: &Path) -> Immutable {
            let done = Command::new("chattr").arg("+i").arg(path).status();
            assert!(
                done.is_ok_and(|s| s.success()),
                "chattr +i {} (needs root)",
                path.display()
            );
            Immutable(path.to_owned())
        }
    }

    impl Drop for Immutable {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }

    fn verified(path: &Path) -> Verified {
        let file = File::open(path).unwrap();
        Verified {
            meta: file.metadata().unwrap(),
            file,
            provenance: crate::policy::tests::record(&[]).into(),
            differences: Vec::new(),
            sealed: None,
            ahead: None,
            kept_ahead: Default::default(),
        }
    }

    #[test]
    fn the_copying_thread_waits_while_the_scan_maps() {
        use std::sync::atomic::AtomicBool;
        let pause = Arc::new(Pause::default());
        let copied = Arc::new(AtomicBool::new(false));
        // No scan on this thread: nothing is held.
        assert!(!quietly(|| *pause.paused.lock().unwrap()));
        let before = SCANNING.with(|s| s.borrow_mut().replace(Arc::clone(&pause)));
        assert!(before.is_none());
        let copier = quietly(|| {
            assert!(*pause.paused.lock().unwrap(), "held while mapping");
            let (held, done) = (Arc::clone(&pause), Arc::clone(&copied));
            let copier = std::thread::spawn(move || {
                held.wait();
                done.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                !copied.load(Ordering::SeqCst),
                "copied while the scan mapped"
            );
            copier
        });
        // Mapped: it goes on.
        copier.join().unwrap();
        assert!(copied.load(Ordering::SeqCst));
        assert!(!*pause.paused.lock().unwrap());
        SCANNING.with(|s| s.borrow_mut().take());
    }

    #[test]
    fn files_that_need_no_copy_start_no_thread_and_wait_for_none() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("lib{i}.so")))
            .collect();
        for p in &paths {
            fs::write(p, b"not a plugin").unwrap();
        }
        let guards: Vec<_> = paths.iter().map(|p| Immutable::set(p)).collect();
        let ahead = CopyAhead::start(&paths, None).unwrap();
        for (i, p) in paths.iter().enumerate() {
            let mut v = verified(p);
            assert_eq!(
                crate::seal::cannot_change(&v.file),
                Some(crate::seal::Unchangeable::Immutable)
            );
            ahead.attach(i, p, &mut v);
            assert!(v.ahead.is_none());
        }
        assert!(ahead.running.get().is_none(), "a thread was started");
        drop(guards);

        // Files that need a copy: the first starts the thread, from the file after it; the
        // later ones are handed what it made of them (nothing here: they hold no record).
        let ahead = CopyAhead::start(&paths, None).unwrap();
        let mut first = verified(&paths[0]);
        ahead.attach(0, &paths[0], &mut first);
        assert!(matches!(ahead.running.get(), Some(Some(_))));
        for (i, p) in paths.iter().enumerate().skip(1) {
            let mut v = verified(p);
            ahead.attach(i, p, &mut v);
            assert!(v.ahead.is_none());
        }
    }
}
