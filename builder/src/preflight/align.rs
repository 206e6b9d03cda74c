//! `preflight --fix`: align a plugin crate with the host — its lock to the host's versions,
//! its toolchain file to the host's compiler, its profile to the host's settings — on a copy
//! of the workspace, whose changed files replace the originals only when every step ran.

use std::fs;
use std::path::{Path, PathBuf};

use host::CheckKind;
use serde::Serialize;
use toml_edit::{value, DocumentMut, Item, Table};

use super::manifest::{read_toml, toolchain_file};
use super::{toml_opt_level, updates, PluginCrate, Preflight, PreflightError, Report, Update};
use crate::cargo;

/// What `--fix` changed, what it could not, and the preflight of the crate afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct Alignment {
    /// The changes made, each as the command or edit that made it.
    pub applied: Vec<String>,
    /// What could not be aligned, with the reason.
    pub not_aligned: Vec<NotAligned>,
    /// The preflight of the crate as it now is.
    pub report: Report,
}

/// A difference `--fix` could not remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotAligned {
    /// The check it belongs to.
    pub check: CheckKind,
    /// What differs, or what was tried.
    pub what: String,
    /// Why it could not be aligned, and what to do instead.
    pub reason: String,
}

/// How many rounds of `cargo update` to run: moving one crate can move another.
const UPDATE_ROUNDS: usize = 4;

impl Preflight<'_> {
    /// Aligns the crate in `dir` with the host, then preflights it again. The work happens on
    /// a copy of its workspace beside it; the original files are replaced at the end, and
    /// left untouched when any step fails with an error.
    pub fn align(&self, dir: &Path) -> Result<Alignment, PreflightError> {
        let krate = PluginCrate::read(dir)?;
        let root = krate.root.clone();
        let crate_dir = krate.manifest.parent().unwrap_or(&root).to_owned();
        let relative = crate_dir.strip_prefix(&root).unwrap_or(Path::new(""));
        let toolchain = toolchain_file(&crate_dir)
            .and_then(|f| f.strip_prefix(&root).ok().map(Path::to_owned))
            .unwrap_or_else(|| PathBuf::from("rust-toolchain.toml"));
        let scratch = Scratch::beside(&root, "fix")?;
        copy_workspace(&root, scratch.path())?;
        let copy_dir = scratch.path().join(relative);
        let (applied, not_aligned) =
            self.align_in_place(&copy_dir, &scratch.path().join(&toolchain))?;

        // Every step ran: move the changed files over the originals, restoring them all if
        // one cannot be moved.
        let files = [
            PathBuf::from("Cargo.lock"),
            PathBuf::from("Cargo.toml"),
            toolchain,
        ];
        let mut moved: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
        for file in files {
            let (new, old) = (scratch.path().join(&file), root.join(&file));
            let Ok(new_bytes) = fs::read(&new) else {
                continue;
            };
            let old_bytes = fs::read(&old).ok();
            if old_bytes.as_deref() == Some(new_bytes.as_slice()) {
                continue;
            }
            if let Err(source) = fs::rename(&new, &old) {
                for (path, bytes) in moved {
                    let _ = match bytes {
                        Some(b) => fs::write(&path, b),
                        None => fs::remove_file(&path),
                    };
                }
                return Err(PreflightError::Io { path: old, source });
            }
            moved.push((old, old_bytes));
        }
        drop(scratch);
        let report = self.run(dir)?;
        Ok(Alignment {
            applied,
            not_aligned,
            report,
        })
    }

    /// The alignment steps, on the crate in `dir` itself (a copy, or a crate being
    /// scaffolded); `toolchain_file` is where a toolchain pin goes.
    pub(crate) fn align_in_place(
        &self,
        dir: &Path,
        toolchain_file: &Path,
    ) -> Result<(Vec<String>, Vec<NotAligned>), PreflightError> {
        let mut applied = Vec::new();
        let mut not_aligned = Vec::new();
        let krate = PluginCrate::read(dir)?;
        if !krate.lockfile().is_file() {
            cargo::cargo_offline_first(&krate.root, &["generate-lockfile"])?;
            applied.push("cargo generate-lockfile".to_owned());
        }
        self.align_toolchain(dir, toolchain_file, &mut applied, &mut not_aligned)?;
        self.align_profile(&krate, &mut applied)?;
        self.align_lock(dir, &krate, &mut applied, &mut not_aligned)?;
        self.align_image(&krate, &mut applied, &mut not_aligned)?;
        Ok((applied, not_aligned))
    }

    /// Pins the host's compiler in the toolchain file rustup reads in `dir`.
    fn align_toolchain(
        &self,
        dir: &Path,
        file: &Path,
        applied: &mut Vec<String>,
        not_aligned: &mut Vec<NotAligned>,
    ) -> Result<(), PreflightError> {
        let host = &self.host.provenance.rustc;
        let (rustc, _, _) = cargo::rustc(dir)?;
        if (&rustc.release, &rustc.commit_hash) == (&host.release, &host.commit_hash) {
            return Ok(());
        }
        let what = format!("rustc {}", rustc.short());
        let Some((toolchain, guessed)) = host::toolchain_name(host) else {
            not_aligned.push(NotAligned {
                check: CheckKind::Rustc,
                what,
                reason: format!(
                    "the host's compiler ({}, a {} build) has no rustup toolchain name",
                    host.short(),
                    host.channel
                ),
            });
            return Ok(());
        };
        // Only a real change is reported as one (the file may pin the host's compiler
        // already, while something else decides over it).
        let before = fs::read(file).ok();
        write_toolchain(file, &toolchain)?;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if fs::read(file).ok() != before {
            applied.push(format!("{name}: channel = \"{toolchain}\""));
        }
        let now = cargo::rustc(dir);
        if now
            .as_ref()
            .is_ok_and(|(r, _, _)| r.commit_hash == host.commit_hash)
        {
            return Ok(());
        }
        let same = |f: &Path| f.canonicalize().ok() == file.canonicalize().ok();
        let reason = match &now {
            Ok((_, _, choice)) if !choice.file().is_some_and(same) => {
                let undo = match choice {
                    cargo::ToolchainChoice::Env { .. } => "unset RUSTUP_TOOLCHAIN".to_owned(),
                    cargo::ToolchainChoice::Rustc { .. } => "unset RUSTC".to_owned(),
                    cargo::ToolchainChoice::Override { dir, .. } => {
                        format!("`rustup override unset --path {}`", dir.display())
                    }
                    _ => format!("pin {toolchain} there instead"),
                };
                format!("{choice} decides the toolchain here, over {name}: {undo} to build with {toolchain}")
            }
            Err(e) => format!(
                "toolchain {toolchain} does not run here (`rustup toolchain install {toolchain}` first): {}",
                e.cargo_reason()
            ),
            Ok((r, _, _)) => format!(
                "toolchain {toolchain} is rustc {}, not the host's {}{}",
                r.short(),
                host.short(),
                if guessed {
                    " (a nightly's name is guessed from its commit date)"
                } else {
                    ""
                }
            ),
        };
        not_aligned.push(NotAligned {
            check: CheckKind::Rustc,
            what,
            reason,
        });
        Ok(())
    }

    /// Sets the host's panic strategy, opt-level and debug assertions in the root manifest's
    /// profile table, where they differ.
    fn align_profile(
        &self,
        krate: &PluginCrate,
        applied: &mut Vec<String>,
    ) -> Result<(), PreflightError> {
        let host = &self.host.provenance.profile;
        let have = krate.profile(&self.cargo_profile)?;
        let mut edits: Vec<(&str, Item)> = Vec::new();
        if have.panic != host.panic {
            edits.push(("panic", value(host.panic.as_str())));
        }
        if have.opt_level != host.opt_level {
            let level: Item = match host.opt_level.parse::<i64>() {
                Ok(n) => value(n),
                Err(_) => value(host.opt_level.as_str()),
            };
            edits.push(("opt-level", level));
        }
        if have.debug_assertions != host.debug_assertions {
            edits.push(("debug-assertions", value(host.debug_assertions)));
        }
        if edits.is_empty() {
            return Ok(());
        }
        let path = krate.root.join("Cargo.toml");
        let mut doc = read_toml(&path)?;
        let profiles = doc
            .entry("profile")
            .or_insert_with(implicit_table)
            .as_table_mut();
        let Some(profiles) = profiles else {
            return Err(PreflightError::Toml {
                path,
                message: "`profile` is not a table".into(),
            });
        };
        let table = profiles
            .entry(&self.cargo_profile)
            .or_insert_with(|| Item::Table(Table::new()));
        for (key, item) in edits {
            let shown = match key {
                "opt-level" => toml_opt_level(&host.opt_level),
                "panic" => format!("\"{}\"", host.panic),
                _ => item.to_string().trim().to_owned(),
            };
            table[key] = item;
            applied.push(format!(
                "Cargo.toml: [profile.{}] {key} = {shown}",
                self.cargo_profile
            ));
        }
        write_atomic(&path, doc.to_string().as_bytes())
    }

    /// Moves every crate shared with the host to the host's version with
    /// `cargo update --precise`, until nothing is left to move.
    fn align_lock(
        &self,
        dir: &Path,
        krate: &PluginCrate,
        applied: &mut Vec<String>,
        not_aligned: &mut Vec<NotAligned>,
    ) -> Result<(), PreflightError> {
        let mut tried: Vec<String> = Vec::new();
        for _ in 0..UPDATE_ROUNDS {
            let predicted = self.predict(dir, krate)?;
            let mut progressed = false;
            for update in updates(&self.host.provenance, &predicted) {
                match update {
                    Update::Precise { name, from, to } => {
                        let command = Update::command(&name, &from, &to);
                        let spec = format!("{name}@{from}");
                        let args = ["update", "-p", &spec, "--precise", &to];
                        progressed |= run_update(
                            &krate.root,
                            command,
                            &args,
                            &mut tried,
                            applied,
                            not_aligned,
                        );
                    }
                    Update::Manifest { name, action } => {
                        if !not_aligned.iter().any(|n| n.what == name) {
                            not_aligned.push(NotAligned {
                                check: CheckKind::Dependencies,
                                what: name,
                                reason: action,
                            });
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Moves every crate of the lock the builder image does not hold (build-time and
    /// proc-macro crates too) to the host's version, until none is left to move.
    fn align_image(
        &self,
        krate: &PluginCrate,
        applied: &mut Vec<String>,
        not_aligned: &mut Vec<NotAligned>,
    ) -> Result<(), PreflightError> {
        let mut tried: Vec<String> = Vec::new();
        for _ in 0..UPDATE_ROUNDS {
            let Some(prediction) = self.image_prediction(krate)? else {
                return Ok(());
            };
            let mut progressed = false;
            for gap in prediction.missing {
                let what = format!("{} {}", gap.name, gap.version);
                let Some(command) = gap.command.clone() else {
                    if !not_aligned.iter().any(|n| n.what == what) {
                        not_aligned.push(NotAligned {
                            check: CheckKind::Dependencies,
                            what,
                            reason: format!(
                                "the builder image holds only the host's crates ({}): {gap}",
                                prediction.host_lockfile.display()
                            ),
                        });
                    }
                    continue;
                };
                let args: Vec<&str> = command.split(' ').skip(1).collect();
                progressed |= run_update(
                    &krate.root,
                    command.clone(),
                    &args,
                    &mut tried,
                    applied,
                    not_aligned,
                );
            }
            if !progressed {
                break;
            }
        }
        Ok(())
    }
}

/// Runs `cargo ARGS` (one `cargo update`, printed as `command`) in the crate at `root`, unless
/// it was tried already; records it in `applied` or, with cargo's reason, in `not_aligned`.
/// Whether it moved something.
fn run_update(
    root: &Path,
    command: String,
    args: &[&str],
    tried: &mut Vec<String>,
    applied: &mut Vec<String>,
    not_aligned: &mut Vec<NotAligned>,
) -> bool {
    if tried.contains(&command) {
        return false;
    }
    tried.push(command.clone());
    match cargo::cargo_offline_first(root, args) {
        Ok(_) => {
            applied.push(command);
            true
        }
        Err(e) => {
            not_aligned.push(NotAligned {
                check: CheckKind::Dependencies,
                what: command,
                reason: e.cargo_reason(),
            });
            false
        }
    }
}

fn implicit_table() -> Item {
    let mut t = Table::new();
    t.set_implicit(true);
    Item::Table(t)
}

/// Writes or updates a toolchain file so it names `toolchain`, keeping its other settings.
fn write_toolchain(path: &Path, toolchain: &str) -> Result<(), PreflightError> {
    let existing = fs::read_to_string(path).ok();
    let text = match existing.as_deref().map(str::parse::<DocumentMut>) {
        Some(Ok(mut doc)) if doc.contains_key("toolchain") => {
            doc["toolchain"]["channel"] = value(toolchain);
            doc.to_string()
        }
        // A legacy one-line `rust-toolchain` file holds just the name.
        Some(_) if path.extension().is_none() => format!("{toolchain}\n"),
        _ => format!("[toolchain]\nchannel = \"{toolchain}\"\n"),
    };
    write_atomic(path, text.as_bytes())
}

/// Writes `path` through a new temporary file beside it and a rename: never through a link
/// planted at `path` or at a temporary name ([`host::small_file::write_atomically`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PreflightError> {
    host::small_file::write_atomically(path, bytes).map_err(|source| PreflightError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A scratch directory beside another, removed when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// `.{name}.plugin-host-{purpose}-RANDOM` in the parent of `dir`: a new directory made
    /// by this call, never one that was there (the parent may be writable by others, as
    /// `/tmp` is: a name they can guess could hold their links and files).
    pub(crate) fn beside(dir: &Path, purpose: &str) -> Result<Scratch, PreflightError> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let prefix = format!(".{name}.plugin-host-{purpose}-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The crate directory it becomes is an ordinary one (the umask still applies).
            builder.permissions(fs::Permissions::from_mode(0o777));
        }
        let made = builder
            .tempdir_in(parent)
            .map_err(|source| PreflightError::Io {
                path: parent.to_owned(),
                source,
            })?;
        Ok(Scratch(made.keep()))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Renames the scratch directory to `to`; it is no longer removed.
    pub(crate) fn persist(self, to: &Path) -> Result<(), std::io::Error> {
        fs::rename(&self.0, to)?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies a workspace's sources: everything but `target/` and hidden entries other than
/// `.cargo/` (which holds config that changes resolution). Nothing is read through a link;
/// a FIFO, a device or a link out of the workspace is an error ([`crate::copy`]).
fn copy_workspace(from: &Path, to: &Path) -> Result<(), PreflightError> {
    crate::copy::copy_tree(from, to, &|rel, _| {
        let name = rel.file_name().unwrap_or_default().to_string_lossy();
        name == "target" || (name.starts_with('.') && name != ".cargo")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_scratch_directory_is_made_new_never_one_planted_under_its_name() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        let victim = p.join("victim");
        fs::write(&victim, "keep me").unwrap();
        // The name the scratch directory used to have, planted with a link in it.
        let planted = p.join(format!(".hello.plugin-host-new-{}", std::process::id()));
        fs::create_dir_all(planted.join("src")).unwrap();
        symlink(&victim, planted.join("src/lib.rs")).unwrap();
        let scratch = Scratch::beside(&p.join("hello"), "new").unwrap();
        assert_ne!(scratch.path(), planted);
        assert!(
            scratch.path().starts_with(p),
            "{}",
            scratch.path().display()
        );
        let name = scratch.path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(".hello.plugin-host-new-"), "{name}");
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
        fs::write(scratch.path().join("x"), "").unwrap();
        // What was planted is left as it was, and nothing was written through its link.
        assert!(planted.join("src").exists());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        // Dropped: removed.
        let made = scratch.path().to_owned();
        drop(scratch);
        assert!(!made.exists());
    }

    #[test]
    fn a_toolchain_file_is_written_through_no_link_planted_at_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("rust-toolchain.toml");
        let pid = std::process::id();
        // The name the writer once used, and the ones it now tries first.
        let mut planted = vec![path.with_extension(format!("plugin-host-{pid}.tmp"))];
        planted.extend((0..3).map(|n| {
            dir.path()
                .join(format!(".rust-toolchain.toml.tmp.{pid}.{n}"))
        }));
        for name in &planted {
            symlink(&victim, name).unwrap();
        }
        write_toolchain(&path, "1.80.0").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[toolchain]\nchannel = \"1.80.0\"\n"
        );
        for name in &planted {
            assert!(
                fs::symlink_metadata(name).unwrap().is_symlink(),
                "{}",
                name.display()
            );
        }
    }
}
