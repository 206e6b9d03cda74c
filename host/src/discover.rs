//! Finding candidate plugin files in plugin directories.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The file name suffix of shared libraries on this platform (`.so`, `.dll`, `.dylib`).
pub const LIBRARY_SUFFIX: &str = std::env::consts::DLL_SUFFIX;

/// A plugin directory could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list plugin directory {}: {source}", dir.display())]
pub struct DiscoverError {
    /// The directory.
    pub dir: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// The most candidate plugin files one directory may hold: a directory with more is refused
/// whole (which of its files would be read cannot depend on the order the file system lists
/// them in), where every one of them would cost a report and a path in memory.
pub const MAX_PLUGIN_FILES: usize = 16_384;

/// Lists the candidate plugin files in `dirs`: every entry whose name ends in
/// [`LIBRARY_SUFFIX`], sorted by name within each directory, directories in the order given.
/// Entries are returned as found (symlinks unresolved); the loader resolves them and reports
/// entries that are not regular files. A directory of more than [`MAX_PLUGIN_FILES`]
/// candidates is an error.
pub fn discover(dirs: &[impl AsRef<Path>]) -> Result<Vec<PathBuf>, DiscoverError> {
    let mut all = Vec::new();
    for dir in dirs {
        let dir = dir.as_ref();
        let error = |source| DiscoverError {
            dir: dir.to_owned(),
            source,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(error)? {
            let name = entry.map_err(error)?.file_name();
            if has_library_suffix(&name) {
                if found.len() == MAX_PLUGIN_FILES {
                    return Err(error(std::io::Error::other(format!(
                        "it holds more than {MAX_PLUGIN_FILES} files named *{LIBRARY_SUFFIX}, the \
                         most one plugin directory may hold; split them across directories"
                    ))));
                }
                found.push(name);
            }
        }
        // Sorted by name (bytes: cheaper than comparing paths component by component).
        found.sort_unstable();
        all.extend(found.into_iter().map(|name| dir.join(name)));
    }
    Ok(all)
}

/// Compared as bytes: a file name need not be UTF-8 to be a plugin (or to be reported).
fn has_library_suffix(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() > LIBRARY_SUFFIX.len() && name.ends_with(LIBRARY_SUFFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_libraries_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.so", "a.so", "notes.txt", "c.so.1", ".so"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let names: Vec<_> = discover(&[dir.path()])
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        if LIBRARY_SUFFIX == ".so" {
            assert_eq!(names, ["a.so", "b.so"]);
        }
        // One more candidate than a directory may hold: refused whole, with what to do.
        let many = tempfile::tempdir().unwrap();
        for i in 0..=MAX_PLUGIN_FILES {
            std::fs::File::create(many.path().join(format!("{i}{LIBRARY_SUFFIX}"))).unwrap();
        }
        let error = discover(&[many.path()]).unwrap_err().to_string();
        assert!(error.contains("more than 16384 files"), "{error}");
        std::fs::remove_file(many.path().join(format!("0{LIBRARY_SUFFIX}"))).unwrap();
        assert_eq!(discover(&[many.path()]).unwrap().len(), MAX_PLUGIN_FILES);
        let missing = discover(&[dir.path().join("nope")]).unwrap_err();
        assert!(
            missing.to_string().contains("cannot list plugin directory"),
            "{missing}"
        );
    }
}
