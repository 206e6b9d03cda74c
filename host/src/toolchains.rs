//! The rustup toolchains installed on this machine, found by the compiler they hold.
//!
//! A toolchain's name says little about its compiler (`nightly` moves; `nightly-2026-05-20`
//! may not be installed although `nightly` holds the very same commit), so a command the host
//! prints for a given compiler names the installed toolchain whose `rustc -vV` shows that
//! compiler's release and commit hash — what `builder build --engine none` does to find the
//! host's own toolchain.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plugin_api::provenance::Rustc;

/// An installed rustup toolchain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Its rustup name (`nightly-x86_64-unknown-linux-gnu`), for `cargo +NAME`.
    pub name: String,
    /// Its directory (the one holding `bin/rustc`).
    pub dir: PathBuf,
}

/// The rustup home: `$RUSTUP_HOME`, else `~/.rustup`.
fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup")))
}

/// The installed toolchain whose rustc is `rustc` (same release and commit hash), if one
/// is: named toolchains (`1.95.0-…`) before channels (`nightly-…`, `stable-…`), which move.
/// Runs each toolchain's `rustc -vV` (the user's own installs; nothing else).
pub fn find_installed(rustc: &Rustc) -> Option<Installed> {
    find_in(&rustup_home()?.join("toolchains"), rustc)
}

/// [`find_installed`] among the toolchains in `dir`.
fn find_in(dir: &Path, rustc: &Rustc) -> Option<Installed> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    // Releases first (`1.95.0-…` sorts before `beta`, `nightly`, `stable`).
    names.sort();
    names.into_iter().find_map(|name| {
        let dir = dir.join(&name);
        let out = Command::new(dir.join("bin/rustc"))
            .arg("-vV")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
                .map(str::trim)
        };
        let fits = out.status.success()
            && field("commit-hash") == Some(rustc.commit_hash.as_str())
            && field("release") == Some(rustc.release.as_str());
        fits.then_some(Installed { name, dir })
    })
}

/// The shortest name `cargo +NAME` accepts for `installed` on a machine of `triple`: without
/// the host triple rustup appends (`nightly` for `nightly-x86_64-unknown-linux-gnu`).
pub fn short_name<'a>(installed: &'a Installed, triple: &str) -> &'a str {
    installed
        .name
        .strip_suffix(triple)
        .and_then(|n| n.strip_suffix('-'))
        .filter(|n| !n.is_empty())
        .unwrap_or(&installed.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rustc(release: &str, hash: &str) -> Rustc {
        Rustc {
            release: release.into(),
            commit_hash: hash.into(),
            commit_date: "2026-05-19".into(),
            channel: "nightly".into(),
            llvm: None,
        }
    }

    /// A toolchain directory whose `bin/rustc -vV` prints `release` and `hash`.
    fn fake(dir: &Path, name: &str, release: &str, hash: &str) {
        let bin = dir.join(name).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\nprintf 'rustc {release}\\nbinary: rustc\\ncommit-hash: {hash}\\n\
             release: {release}\\n'\n"
        );
        std::fs::write(bin.join("rustc"), script).unwrap();
        std::fs::set_permissions(bin.join("rustc"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    #[test]
    fn the_toolchain_is_found_by_its_compiler_not_its_name() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        let triple = "x86_64-unknown-linux-gnu";
        fake(dir, &format!("stable-{triple}"), "1.95.0", "aaaa");
        fake(
            dir,
            &format!("nightly-{triple}"),
            "1.97.0-nightly",
            "e50aa6fba",
        );
        // Named after a date, but another compiler.
        fake(
            dir,
            &format!("nightly-2026-05-20-{triple}"),
            "1.97.0-nightly",
            "other",
        );
        let found = find_in(dir, &rustc("1.97.0-nightly", "e50aa6fba")).unwrap();
        assert_eq!(found.name, format!("nightly-{triple}"));
        assert_eq!(short_name(&found, triple), "nightly");
        assert_eq!(short_name(&found, "aarch64-unknown-linux-gnu"), found.name);
        // A release wins over a channel holding the same compiler.
        fake(dir, &format!("1.95.0-{triple}"), "1.95.0", "aaaa");
        let found = find_in(dir, &rustc("1.95.0", "aaaa")).unwrap();
        assert_eq!(short_name(&found, triple), "1.95.0");
        assert_eq!(find_in(dir, &rustc("1.97.0-nightly", "missing")), None);
        assert_eq!(find_in(&dir.join("absent"), &rustc("1.95.0", "aaaa")), None);
    }
}
