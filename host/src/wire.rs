//! An application's own capability kinds, carried as bytes: the wire encoding the application
//! provides ([`WireEncoding`]), registered with [`crate::Kinds::with_wire`] in the host and in
//! its worker (the `plugin-isolate` crate's `worker::serve_if_worker_with`).
//!
//! A call to an isolated capability of such a kind goes as bytes: the host's proxy object (the
//! application's, built by [`WireEncoding::proxy`]) encodes its arguments and sends them
//! through a [`Remote`]; the worker looks the plugin's real object up and hands it the bytes
//! ([`WireEncoding::serve`]), whose reply bytes come back to the proxy. Transport, deadlines,
//! crash handling, restarts and reload belong to the placement that carries the bytes (the
//! `plugin-isolate` crate, through a [`Channel`]), as for the built-in kinds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use abi_stable::std_types::RVec;
use plugin_api::{CallError, CallErrorKind, CapabilityExport, CapabilityKind};

use crate::registry::Registry;

/// How the calls of capability kind [`WireEncoding::Kind`] cross to a worker and back. An
/// application implements it on a type of its own (the kind may come from another crate) and
/// registers it with [`crate::Kinds::with_wire`], both in its host and in its worker.
///
/// The encoding is the application's business; the host carries `request` and `reply` as
/// opaque bytes, up to the protocol's frame limit.
pub trait WireEncoding: 'static {
    /// The kind this encodes.
    type Kind: CapabilityKind;

    /// Host side: the object callers get for an isolated capability of this kind. Each of its
    /// calls encodes its arguments and sends them with [`Remote::call_with`], which decodes the
    /// reply (or returns the error, which carries the reason code of a worker's failure).
    ///
    /// The reply is the worker's bytes: **untrusted** (the worker runs plugin code). Decode it
    /// inside `call_with`, which turns a panicking decoder into an error: a panic anywhere
    /// else in the proxy's methods would reach the kind's FFI shims, which abort the process.
    fn proxy(remote: Remote) -> <Self::Kind as CapabilityKind>::Object;

    /// Worker side: one call to the plugin's `object`, with `request` as the proxy encoded
    /// it; the reply's bytes are appended to `reply`. The object's own error (or panic,
    /// caught by the kind's guard) is returned as it is.
    fn serve(
        object: &<Self::Kind as CapabilityKind>::Object,
        request: &[u8],
        reply: &mut RVec<u8>,
    ) -> Result<(), CallError>;
}

/// What carries a call's bytes to a plugin placed elsewhere and its reply back: implemented
/// by a placement (the `plugin-isolate` crate's supervisor of a worker).
pub trait Channel: Send + Sync {
    /// The plugin's name.
    fn plugin(&self) -> &str;
    /// Sends `request` to capability `name` of `kind` and appends the reply to `reply`; the
    /// error is the plugin's own or the carrier's (its reason code at the end of the message).
    fn call(
        &self,
        kind: &str,
        name: &str,
        request: &[u8],
        reply: &mut RVec<u8>,
    ) -> Result<(), CallError>;
}

/// The way from a proxy object to its isolated capability in the worker ([`WireEncoding`]).
#[derive(Clone)]
pub struct Remote {
    channel: Arc<dyn Channel>,
    kind: &'static str,
    name: Arc<str>,
}

impl Remote {
    /// Sends one call (`request`, encoded by the kind's [`WireEncoding::proxy`]) and appends
    /// the worker's reply to `reply`. Errors: the plugin's own, or a failure of the worker
    /// (crash, deadline, protocol) whose message ends in its reason code
    /// (`plugin_isolate::reason`). Never panics.
    pub fn call(&self, request: &[u8], reply: &mut RVec<u8>) -> Result<(), CallError> {
        let call = || self.channel.call(self.kind, &self.name, request, reply);
        catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| {
            Err(CallError {
                kind: CallErrorKind::Failed,
                message: format!(
                    "the host's proxy for isolated plugin `{}` panicked",
                    self.channel.plugin()
                )
                .into(),
            })
        })
    }

    /// Sends one call as [`Remote::call`] does and decodes the reply with `decode`, which
    /// reads untrusted bytes: its errors are returned as they are, and a panic in it becomes a
    /// [`CallError`] too (never an unwinding out of the proxy).
    pub fn call_with<T>(
        &self,
        request: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut reply = RVec::new();
        self.call(request, &mut reply)?;
        catch_unwind(AssertUnwindSafe(|| decode(&reply))).unwrap_or_else(|_| {
            Err(CallError {
                kind: CallErrorKind::Failed,
                message: format!(
                    "decoding the reply of isolated plugin `{}`'s {} `{}` panicked ({} bytes \
                     from its worker)",
                    self.channel.plugin(),
                    self.kind,
                    self.name,
                    reply.len()
                )
                .into(),
            })
        })
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        self.channel.plugin()
    }

    /// The capability's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Serves one call in the worker: capability `name`, found in the registry, called with the
/// request; the reply appended.
pub type ServeFn = fn(&Registry, &str, &[u8], &mut RVec<u8>) -> Result<(), CallError>;

/// A [`WireEncoding`] with its types erased, as [`crate::Kinds`] keeps it.
#[derive(Clone, Copy)]
pub struct WireFns {
    /// The proxy capability for a remote capability.
    pub export: fn(Remote) -> CapabilityExport,
    /// Serves one call in the worker.
    pub serve: ServeFn,
}

impl WireFns {
    pub(crate) fn of<W: WireEncoding>() -> Self {
        WireFns {
            export: export::<W>,
            serve: serve::<W>,
        }
    }
}

fn export<W: WireEncoding>(remote: Remote) -> CapabilityExport {
    let name = remote.name.clone();
    CapabilityExport::new::<W::Kind>(&name, W::proxy(remote))
}

fn serve<W: WireEncoding>(
    registry: &Registry,
    name: &str,
    request: &[u8],
    reply: &mut RVec<u8>,
) -> Result<(), CallError> {
    let object = registry.get::<W::Kind>(name).map_err(|e| CallError {
        kind: CallErrorKind::Failed,
        message: e.to_string().into(),
    })?;
    W::serve(object, request, reply)
}

/// The proxy capability for `(kind, name)` of a plugin reached through `channel`, by the
/// application's wire encoding of `kind`.
pub fn export_with(
    wire: WireFns,
    channel: Arc<dyn Channel>,
    kind: &'static str,
    name: &str,
) -> CapabilityExport {
    (wire.export)(Remote {
        channel,
        kind,
        name: name.into(),
    })
}
