//! Finding the host's exact toolchain among the installed rustup toolchains.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The rustup home: `$RUSTUP_HOME`, else `~/.rustup`.
fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup")))
}

/// The installed toolchain whose rustc has the host's commit hash (not downloaded: it is
/// the one the host was built with, or an identical install of it). Named toolchains
/// (`1.95.0-…`) are preferred to channels (`stable-…`), which move.
pub fn find(rustc: &Rustc) -> Result<Toolchain, ContainerError> {
    let not_found = || ContainerError::ToolchainNotFound {
        release: rustc.release.clone(),
        commit: rustc.commit_hash.clone(),
    };
    let dir = rustup_home().ok_or_else(not_found)?.join("toolchains");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Err(not_found());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    // Releases first (`1.95.0-…` sorts before `beta`, `nightly`, `stable`).
    names.sort();
    for name in names {
        let sysroot = dir.join(&name);
        let Ok(out) = Command::new(sysroot.join("bin/rustc")).arg("-vV").output() else {
            continue;
        };
        let Ok(facts) = plugin_api::build::parse_rustc_vv(&String::from_utf8_lossy(&out.stdout))
        else {
            continue;
        };
        if out.status.success()
            && facts.commit_hash == rustc.commit_hash
            && facts.release == rustc.release
        {
            let sysroot = sysroot
                .canonicalize()
                .map_err(ContainerError::io(&sysroot))?;
            return Ok(Toolchain { name, sysroot });
        }
    }
    Err(not_found())
}
