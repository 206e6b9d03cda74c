//! Finding the host's exact toolchain among the installed rustup toolchains.

use std::path::PathBuf;

use plugin_api::provenance::Rustc;

use super::error::ContainerError;

/// An installed toolchain whose `rustc -vV` is the host's compiler.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Its rustup name (`1.95.0-x86_64-unknown-linux-gnu`), for `cargo +NAME`.
    pub name: String,
    /// Its sysroot (the directory holding `bin/rustc`), symlinks resolved.
    pub sysroot: PathBuf,
}

/// The installed toolchain whose rustc has the host's commit hash (not downloaded: it is
/// the one the host was built with, or an identical install of it). Named toolchains
/// (`1.95.0-…`) are preferred to channels (`stable-…`), which move
/// ([`host::toolchains::find_installed`], which the host's worker hint uses too).
pub fn find(rustc: &Rustc) -> Result<Toolchain, ContainerError> {
    let found = host::toolchains::find_installed(rustc).ok_or_else(|| {
        ContainerError::ToolchainNotFound {
            release: rustc.release.clone(),
            commit: rustc.commit_hash.clone(),
        }
    })?;
    let sysroot = found
        .dir
        .canonicalize()
        .map_err(ContainerError::io(&found.dir))?;
    Ok(Toolchain {
        name: found.name,
        sysroot,
    })
}
