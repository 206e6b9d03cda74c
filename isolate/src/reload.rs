//! Reloading an isolated plugin without restarting the host ([`host::Host::reload`], which
//! verifies the plugin's file again and hands it here).
//!
//! A new worker is started on the verified bytes, and, once it has registered every
//! capability the host holds a proxy for, the plugin's supervisor switches to it: the call
//! in flight finishes on the old worker, every later call (through any handle, old or new)
//! goes to the new one, and the old worker is stopped gracefully. Any failure before the
//! switch leaves the old worker serving, untouched. The switch clears the plugin's failure
//! count, and revives a plugin that was unregistered after too many failures
//! ([`crate::MAX_FAILURES`]). Concurrent reloads of one plugin each switch in turn, the last
//! one wins.

use host::place::{Request, Verified};
use host::{CapabilityInfo, ReasonCode};

use super::supervise::stop;
use super::{Isolated, Supervisor};

/// Starts a worker on `verified` (the plugin's file, verified again) and switches the
/// plugin to it: the capabilities it serves, or why not (the old worker serving on).
pub(crate) fn reload(
    isolated: &Isolated,
    request: &Request<'_>,
    verified: Verified,
) -> Result<Vec<CapabilityInfo>, (ReasonCode, String)> {
    let supervisor = &isolated.supervisor;
    let name = request.name;
    let shown = request.path.display().to_string();
    // The worker the NEW file was judged against (`request.worker`): a rebuild by another
    // compiler runs in the registered worker of that compiler, one by the host's compiler in
    // the host's own worker — not in the worker the old file happened to need.
    let spec = super::spec(&isolated.settings, request, verified.into_file())
        .map_err(|detail| (ReasonCode::HandshakeFailed, detail))?;
    let (mut worker, capabilities) = super::spawn::start(&spec).map_err(|e| {
        let prefix = format!("{shown}: ");
        let message = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
        (e.reason, message.to_owned())
    })?;
    // As many as a plugin may register, as a first start requires (`Isolation::place`).
    if capabilities.len() > host::limits::MAX_CAPABILITIES {
        worker.kill();
        let message = format!(
            "the new file's worker registers {} capabilities, more than {}; report it to \
             the plugin's author",
            capabilities.len(),
            host::limits::MAX_CAPABILITIES
        );
        return Err((ReasonCode::InvalidCapability, message));
    }
    if let Some(missing) = missing(supervisor, &capabilities) {
        worker.kill();
        let message = format!(
            "the new file's worker does not register {missing}, which the host holds \
             (a reload may add capabilities, never drop one: restart the host to drop it)"
        );
        return Err((ReasonCode::CapabilitiesChanged, message));
    }
    let registered = supervisor.registered();
    let added: Vec<&plugin_protocol::Capability> = capabilities
        .iter()
        .filter(|c| !registered.contains(c))
        .collect();
    if !added.is_empty() {
        // What the worker sent, shown bounded: a few, each cut and made printable.
        let named: Vec<String> = added
            .iter()
            .take(SHOWN)
            .map(|c| {
                let shown = |text| super::bounds::shown(text, host::limits::MAX_CAPABILITY_NAME);
                format!("{} `{}`", shown(&c.kind), shown(&c.name))
            })
            .collect();
        let more = match added.len().saturating_sub(SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        tracing::warn!(
            "plugin `{name}`: its reloaded worker also registers {}{more}, which stay \
             unregistered until the host restarts",
            named.join(", ")
        );
    }
    let pid = worker.pid;
    for old in supervisor.replace(spec, worker, capabilities) {
        stop(old);
    }
    tracing::debug!("plugin `{name}` switched to worker pid {pid}");
    Ok(registered_infos(supervisor))
}

/// The most capabilities a reload's warning names.
const SHOWN: usize = 16;

/// The first capability the supervised plugin registered that `capabilities` lacks, named.
fn missing(
    supervisor: &Supervisor,
    capabilities: &[plugin_protocol::Capability],
) -> Option<String> {
    supervisor
        .registered()
        .iter()
        .find(|c| !capabilities.contains(c))
        .map(|c| format!("its {} `{}`", c.kind, host::text::printable(&c.name)))
}

fn registered_infos(supervisor: &Supervisor) -> Vec<CapabilityInfo> {
    let mut infos: Vec<_> = supervisor
        .registered()
        .iter()
        .map(|c| CapabilityInfo {
            kind: c.kind.clone(),
            name: c.name.clone(),
        })
        .collect();
    infos.sort();
    infos
}
