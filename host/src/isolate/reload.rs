//! Reloading an isolated plugin without restarting the host ([`Host::reload`]).
//!
//! The plugin's file is verified again at the path it was loaded from, a new worker is
//! started on the verified bytes, and, once it has registered every capability the host
//! holds a proxy for, the plugin's supervisor switches to it: the call in flight finishes on
//! the old worker, every later call (through any handle, old or new) goes to the new one,
//! and the old worker is stopped gracefully. Any failure before the switch leaves the old
//! worker serving, untouched.

use std::collections::HashMap;
use std::sync::Arc;

use crate::host::Host;
use crate::reason::ReasonCode;
use crate::report::{PluginReport, Status};

use super::supervise::stop;
use super::Supervisor;

/// Why [`Host::reload`] did not switch a plugin to a new worker. In every case the plugin
/// serves on as before: its calls never fail because of a reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// No plugin of that name is loaded.
    #[error("no plugin named `{name}` is loaded, so there is nothing to reload")]
    NotLoaded {
        /// The name asked for.
        name: String,
    },
    /// The plugin runs in-process (or is built into the host): a loaded library is never
    /// unloaded, so only isolated plugins can be reloaded.
    #[error(
        "plugin `{name}` runs in-process and cannot be reloaded: a loaded library is never \
         unloaded; only isolated plugins reload (`isolation = \"process\"`, `--isolate {name}`)"
    )]
    InProcess {
        /// The plugin.
        name: String,
    },
    /// The new file was refused (verification, the trust step, the policy, another plugin's
    /// name), its worker failed to start or register, or it no longer registers a
    /// capability the host holds: the old worker serves on.
    #[error("reloading plugin `{name}` failed, its old worker serves on: {message} [{reason}]")]
    Refused {
        /// The plugin.
        name: String,
        /// Why, as a reason code.
        reason: ReasonCode,
        /// Why, in words.
        message: String,
    },
}

impl ReloadError {
    /// The reason code of a refused reload; `None` when there was nothing to reload.
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            ReloadError::Refused { reason, .. } => Some(*reason),
            ReloadError::NotLoaded { .. } | ReloadError::InProcess { .. } => None,
        }
    }
}

impl Host {
    /// Reloads the isolated plugin `name` from its file, without restarting the host.
    ///
    /// Opens the file at the path the plugin was loaded from (a new build may have been
    /// installed there since), verifies it as [`Host::load`] does (read, trust step, judge:
    /// a lock, signature or policy refusal applies; the file must carry the same plugin
    /// name), starts a new worker on the verified bytes and has it load and register the
    /// plugin. The new worker is the one the new file needs: a file built by another
    /// compiler than the host's runs in the registered worker it passes against
    /// ([`Host::with_worker`]), whichever worker the old file ran in; one built by the host's
    /// compiler in the host's own worker (a reload never moves a plugin in-process). The new
    /// worker must register every capability the plugin registered when it
    /// was first loaded, since callers may hold handles to them (capabilities it adds are
    /// served by no handle and stay unregistered until the host restarts; a warning says
    /// so); one it drops refuses the reload (`capabilities-changed`).
    ///
    /// Then the switch: the call in flight (calls to one isolated plugin run one at a time)
    /// finishes on the old worker, every later call — through handles handed out before the
    /// reload too — goes to the new one, and the old worker is stopped gracefully. The
    /// switch clears the plugin's failure count, and revives a plugin that was unregistered
    /// after too many failures ([`crate::isolate::MAX_FAILURES`]). Returns the new file's
    /// report (`loaded`, with its version and capabilities).
    ///
    /// A reload that fails at any step leaves the old worker serving and says why
    /// ([`ReloadError::Refused`], with a reason code). Calls never fail because of a reload.
    /// In-process plugins cannot be reloaded ([`ReloadError::InProcess`]): their libraries
    /// are never unloaded. [`Host::plugins`] keeps listing the provenance of the first load.
    ///
    /// Takes `&self`, so one thread can reload while others call through their handles;
    /// concurrent reloads of one plugin each switch in turn, the last one wins.
    pub fn reload(&self, name: &str) -> Result<PluginReport, ReloadError> {
        let supervisor = self
            .isolation
            .supervisors
            .iter()
            .find(|s| s.plugin() == name)
            .cloned();
        let (Some(supervisor), Some(path)) = (supervisor, self.isolation.sources.get(name)) else {
            return Err(if self.plugins().iter().any(|p| &*p.name == name) {
                ReloadError::InProcess {
                    name: name.to_owned(),
                }
            } else {
                ReloadError::NotLoaded {
                    name: name.to_owned(),
                }
            });
        };
        let refused = |reason: ReasonCode, message: String| {
            tracing::warn!(
                "[{reason}] reloading plugin `{name}` failed, its old worker serves on: {}",
                crate::text::printable(&message)
            );
            ReloadError::Refused {
                name: name.to_owned(),
                reason,
                message,
            }
        };
        tracing::debug!("reloading plugin `{name}` from {}", path.display());
        let (mut report, verified) = self.verify_inner(path, &HashMap::new(), None, Some(name));
        let Some(verified) = verified else {
            let reason = report.reason.unwrap_or(ReasonCode::NotALibrary);
            let message = report
                .message
                .unwrap_or_else(|| format!("the file is {}", report.status.as_str()));
            return Err(refused(reason, message));
        };
        if verified.provenance.name != name {
            let message = format!(
                "{} now holds plugin `{}`, not `{name}`",
                path.display(),
                crate::text::printable(&verified.provenance.name)
            );
            return Err(refused(ReasonCode::NameMismatch, message));
        }
        self.run_before_load(path);
        let shown = path.display().to_string();
        let file = verified.sealed.unwrap_or(verified.file);
        // The worker the NEW file was judged against: a rebuild by another compiler runs in
        // the registered worker of that compiler, one by the host's compiler in the host's
        // own worker — not in the worker the old file happened to need.
        let chosen = report.worker.as_ref().map(|w| w.path.as_path());
        let spec = self
            .worker_spec(name, &shown, file, chosen)
            .map_err(|detail| refused(ReasonCode::HandshakeFailed, detail))?;
        let (mut worker, capabilities) = super::spawn::start(&spec).map_err(|e| {
            let prefix = format!("{shown}: ");
            let message = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
            refused(e.reason, message.to_owned())
        })?;
        if let Some(missing) = missing(&supervisor, &capabilities) {
            worker.kill();
            let message = format!(
                "the new file's worker does not register {missing}, which the host holds \
                 (a reload may add capabilities, never drop one: restart the host to drop it)"
            );
            return Err(refused(ReasonCode::CapabilitiesChanged, message));
        }
        let added: Vec<String> = capabilities
            .iter()
            .filter(|c| !supervisor.registered().contains(c))
            .map(|c| format!("{} `{}`", c.kind, crate::text::printable(&c.name)))
            .collect();
        if !added.is_empty() {
            tracing::warn!(
                "plugin `{name}`: its reloaded worker also registers {}, which stay \
                 unregistered until the host restarts",
                added.join(", ")
            );
        }
        let pid = worker.pid;
        let old = supervisor.replace(spec, worker, capabilities);
        if let Some(old) = old {
            stop(old);
        }
        tracing::info!(
            "reloaded plugin `{name}` {} from {shown} (worker pid {pid})",
            verified.provenance.version
        );
        report.isolated = true;
        report.status = Status::Loaded;
        report.capabilities = registered_infos(&supervisor);
        Ok(report)
    }
}

/// The first capability the supervised plugin registered that `capabilities` lacks, named.
fn missing(
    supervisor: &Arc<Supervisor>,
    capabilities: &[plugin_protocol::Capability],
) -> Option<String> {
    supervisor
        .registered()
        .iter()
        .find(|c| !capabilities.contains(c))
        .map(|c| format!("its {} `{}`", c.kind, crate::text::printable(&c.name)))
}

fn registered_infos(supervisor: &Supervisor) -> Vec<crate::registry::CapabilityInfo> {
    let mut infos: Vec<_> = supervisor
        .registered()
        .iter()
        .map(|c| crate::registry::CapabilityInfo {
            kind: c.kind.clone(),
            name: c.name.clone(),
        })
        .collect();
    infos.sort();
    infos
}
