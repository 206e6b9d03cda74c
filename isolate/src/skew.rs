//! Skewed plugins that still run: workers built with another toolchain.
//!
//! A plugin refused in-process because another compiler built it (`rustc-mismatch`, or
//! `dependency-mismatch` under `strict`) can still run isolated, in a worker built with the
//! plugin's own toolchain: the host↔worker protocol does not depend on the toolchain. An
//! application registers such workers with [`crate::Isolation::worker`] (`--worker PATH` on the
//! command line; `plugin-host builder worker --toolchain T --out DIR` builds one). The host
//! reads each worker binary's provenance note without running it
//! ([`host::read_worker_provenance`]) and, for a plugin it refuses for a toolchain
//! difference, judges the plugin against each worker's provenance under the same policy: the
//! first worker against which it passes every check runs it. The worker judges it again
//! against its own identity before loading it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use host::text::printable;
use host::{judge_with, toolchain_name, CheckKind, Policy, PreparedHost, Verdict, WorkerChoice};
use plugin_api::provenance::{Provenance, Rustc};

/// A worker binary registered with [`crate::Isolation::worker`].
#[derive(Clone)]
pub(crate) struct WorkerBinary {
    pub(crate) path: PathBuf,
    /// Its provenance, prepared for judging, or why it could not be read.
    pub(crate) identity: Result<Arc<(Provenance, PreparedHost)>, String>,
}

/// The file name `plugin-host builder worker` gives a worker built by compiler `rustc`:
/// `plugin-host-worker-<toolchain>` (e.g. `plugin-host-worker-nightly-2026-04-15`, the
/// rustup name of the toolchain as [`toolchain_name`] guesses it; release and commit for a
/// compiler it cannot name).
pub fn worker_file_name(rustc: &Rustc) -> String {
    let short = match toolchain_name(rustc) {
        Some((name, _)) => name,
        None => {
            let hash: String = rustc.commit_hash.chars().take(9).collect();
            format!("{}-{hash}", rustc.release)
        }
    };
    let safe: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("plugin-host-worker-{safe}")
}

/// The installed toolchain holding `rustc` ([`host::toolchains::find_installed`]), looked
/// up once per compiler and process: a scan may refuse many plugins of one compiler.
fn installed_toolchain(rustc: &Rustc) -> Option<host::toolchains::Installed> {
    type Seen = Vec<((String, String), Option<host::toolchains::Installed>)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    let key = (rustc.release.clone(), rustc.commit_hash.clone());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, found)) = seen.iter().find(|(k, _)| *k == key) {
        return found.clone();
    }
    let found = host::toolchains::find_installed(rustc);
    seen.push((key, found.clone()));
    found
}

impl crate::Isolation {
    /// Registers a worker binary built with another toolchain (repeatable): a plugin the host
    /// refuses in-process for a toolchain difference (`rustc-mismatch`, or
    /// `dependency-mismatch` under `strict`) runs isolated in the first registered worker
    /// against whose provenance it passes every check of its policy. `path` is a
    /// `plugin-host` binary (it serves `__worker`) built with the plugin's toolchain, e.g.
    /// by `plugin-host builder worker`; its provenance note is read now, without running it.
    /// A worker whose provenance cannot be read is never chosen (the refusal says why).
    pub fn worker(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let identity = match host::read_worker_provenance(&path) {
            Ok(p) => {
                let prepared = PreparedHost::new(&p);
                Ok(Arc::new((p, prepared)))
            }
            Err(e) => {
                tracing::warn!("worker {}: {e}", printable(&path.to_string_lossy()));
                Err(e.to_string())
            }
        };
        self.settings()
            .workers
            .push(WorkerBinary { path, identity });
        self
    }
}

/// The first registered worker that can run `plugin`, refused in-process by `refused` (a
/// failed check): the worker's choice and the verdict against its provenance. `None` when the
/// refusal is not about the toolchain or no worker passes.
pub(crate) fn pick_worker(
    workers: &[WorkerBinary],
    host: &Provenance,
    plugin: &Provenance,
    policy: &Policy,
    refused: CheckKind,
) -> Option<(WorkerChoice, Verdict)> {
    if !matches!(refused, CheckKind::Rustc | CheckKind::Dependencies) {
        return None;
    }
    workers.iter().find_map(|w| {
        let (provenance, prepared) = &**w.identity.as_ref().ok()?;
        let verdict = judge_with(provenance, prepared, plugin, policy);
        if verdict.failure().is_some() {
            return None;
        }
        let why = match refused {
            CheckKind::Rustc => format!(
                "built by another rustc than the host ({}; host: {})",
                plugin.rustc.short(),
                host.rustc.short()
            ),
            _ => "it shares crates with the host at other versions or contents, and the \
                      policy requires the same"
                .to_owned(),
        };
        let choice = WorkerChoice {
            path: w.path.clone(),
            rustc: provenance.rustc.short(),
            why,
        };
        Some((choice, verdict))
    })
}

/// What to add to a refusal for a toolchain difference no registered worker resolves: how to
/// build a worker with the plugin's toolchain (and why each registered worker did not fit).
/// Empty when the plugin's compiler is the host's.
pub(crate) fn worker_hint(
    workers: &[WorkerBinary],
    host: &Provenance,
    plugin: &Provenance,
    policy: &Policy,
) -> String {
    let triple = &host.target;
    let host = &host.rustc;
    if host::same_rustc(&plugin.rustc, host) {
        return String::new();
    }
    // The installed toolchain that holds the plugin's compiler, whatever its name; else
    // the name it is released under, to install.
    let installed = installed_toolchain(&plugin.rustc);
    let (toolchain, missing) = match &installed {
        Some(found) => (
            host::toolchains::short_name(found, triple).to_owned(),
            String::new(),
        ),
        None => {
            let r = &plugin.rustc;
            match toolchain_name(r) {
                Some((name, guessed)) => {
                    let check = if guessed {
                        format!(
                            "; it is named after the day after the commit date {}: \
                                 `rustc +{name} -vV` must show commit-hash {}",
                            r.commit_date, r.commit_hash
                        )
                    } else {
                        String::new()
                    };
                    let missing = format!(
                        " (no installed toolchain has rustc {}: install it first, `rustup \
                             toolchain install {name}`{check})",
                        r.short()
                    );
                    (name, missing)
                }
                None => {
                    let missing = format!(
                        " (no installed toolchain has rustc {}, commit {}: install one \
                             that does and name it here)",
                        r.short(),
                        r.commit_hash
                    );
                    (r.release.clone(), missing)
                }
            }
        }
    };
    let mut hint = format!(
        "; or run it isolated in a worker built with its compiler: `plugin-host builder \
             worker --toolchain {toolchain} --out DIR`{missing}, then `--worker DIR/{}` (or list \
             it in `[isolation] workers` in the configuration)",
        worker_file_name(&plugin.rustc)
    );
    let tried: Vec<String> = workers
        .iter()
        .map(|w| {
            let shown = printable(&w.path.to_string_lossy()).into_owned();
            match &w.identity {
                Err(e) => format!("{shown}: unreadable ({e})"),
                Ok(id) => {
                    let (provenance, prepared) = &**id;
                    let verdict = judge_with(provenance, prepared, plugin, policy);
                    let failed = verdict
                        .failure()
                        .map(|c| c.check.reason().as_str())
                        .unwrap_or("?");
                    format!("{shown} (rustc {}): [{failed}]", provenance.rustc.short())
                }
            }
        })
        .collect();
    if !tried.is_empty() {
        hint.push_str(&format!(
            " (no registered worker fits: {})",
            tried.join("; ")
        ));
    }
    hint
}
