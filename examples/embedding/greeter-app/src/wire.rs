//! How a greeter call crosses to an isolated plugin's worker and back (`--isolate`): the
//! kinds this application knows, with the greeter's wire encoding.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use greeter_kind::{FfiGreeter, FfiGreeter_TO, GreeterKind};
use host::wire::{Remote, WireEncoding};
use host::Kinds;
use plugin_api::{CallError, CallErrorKind};

/// The kinds plugins may register here: `greeter` alone (not the demo kinds), with its wire
/// encoding so that greeters can run isolated. The host and its workers use the same.
pub fn kinds() -> Kinds {
    Kinds::new().with_wire::<GreeterWire>()
}

/// How a greeter call crosses to an isolated plugin's worker and back: the name to greet as
/// UTF-8 bytes, the greeting back the same way. (Any encoding will do; the host carries the
/// bytes, and handles deadlines, crashes and restarts.)
struct GreeterWire;

impl WireEncoding for GreeterWire {
    type Kind = GreeterKind;

    /// In the application: the greeter callers get, which forwards to the worker.
    fn proxy(remote: Remote) -> FfiGreeter_TO<'static, RBox<()>> {
        FfiGreeter_TO::from_value(RemoteGreeter(remote), TD_Opaque)
    }

    /// In the worker: one call to the plugin's greeter.
    fn serve(
        greeter: &FfiGreeter_TO<'static, RBox<()>>,
        request: &[u8],
        reply: &mut RVec<u8>,
    ) -> Result<(), CallError> {
        let who = std::str::from_utf8(request).map_err(|_| CallError {
            kind: CallErrorKind::Failed,
            message: "the name to greet is not UTF-8".into(),
        })?;
        let greeting = greeter.greet(who.into()).into_result()?;
        reply.extend_from_copy_slice(greeting.as_bytes());
        Ok(())
    }
}

/// A greeter in a worker process, as the application sees it.
struct RemoteGreeter(Remote);

impl FfiGreeter for RemoteGreeter {
    fn greet(&self, who: RStr<'_>) -> RResult<RString, CallError> {
        // The reply is the worker's bytes, untrusted: decoded in `call_with`, which turns a
        // panicking decoder into an error (and this one cannot fail: bad UTF-8 is replaced).
        self.0
            .call_with(who.as_str().as_bytes(), |reply| {
                Ok(RString::from(String::from_utf8_lossy(reply).into_owned()))
            })
            .into()
    }
}
