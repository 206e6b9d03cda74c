//! Copying trees and hashing files, for contexts and staging.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::ContainerError;

/// Copies the tree `from` to `to` (created), keeping symlinks as symlinks and permission
/// bits; `skip(relative_path, is_dir)` leaves an entry out.
pub(crate) fn copy_tree(
    from: &Path,
    to: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> Result<(), ContainerError> {
    copy_below(from, to, Path::new(""), skip)
}

fn copy_below(
    from: &Path,
    to: &Path,
    relative: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> Result<(), ContainerError> {
    fs::create_dir_all(to).map_err(ContainerError::io(to))?;
    let mut entries: Vec<_> = fs::read_dir(from)
        .map_err(ContainerError::io(from))?
        .collect::<Result<_, _>>()
        .map_err(ContainerError::io(from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let source = entry.path();
        let target = to.join(entry.file_name());
        let rel = relative.join(entry.file_name());
        let kind = entry.file_type().map_err(ContainerError::io(&source))?;
        if skip(&rel, kind.is_dir()) {
            continue;
        }
        if kind.is_symlink() {
            let link = fs::read_link(&source).map_err(ContainerError::io(&source))?;
            std::os::unix::fs::symlink(&link, &target).map_err(ContainerError::io(&target))?;
        } else if kind.is_dir() {
            copy_below(&source, &target, &rel, skip)?;
        } else {
            fs::copy(&source, &target).map_err(ContainerError::io(&target))?;
        }
    }
    Ok(())
}

/// Makes `path` executable by everyone (`rwxr-xr-x`).
pub(crate) fn make_executable(path: &Path) -> Result<(), ContainerError> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(ContainerError::io(path))
}

/// The hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, ContainerError> {
    let mut file = fs::File::open(path).map_err(ContainerError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(ContainerError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path`, creating its parent directory.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), ContainerError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(ContainerError::io(parent))?;
    }
    fs::write(path, text).map_err(ContainerError::io(path))
}
