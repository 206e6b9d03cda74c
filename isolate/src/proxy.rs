//! Proxy capabilities: host-side `command` and `transform` objects that forward each call to
//! the plugin's worker. They are built with the kinds' own FFI types, so the registry hands
//! them out exactly like a loaded plugin's.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::spawn::{Input, Target};
use super::Supervisor;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};
use plugin_api::kinds::{FfiCommand, FfiCommand_TO, FfiTransform, FfiTransform_TO};
use plugin_api::{CallError, CallErrorKind, CapabilityExport, CommandKind, TransformKind};

/// The kinds that have a wire encoding, and so can be isolated.
pub(crate) const WIRE_KINDS: [&str; 2] = ["command", "transform"];

struct CommandProxy {
    supervisor: Arc<Supervisor>,
    name: String,
    /// Its position in the supervisor's `registered` list (see [`Target`]).
    index: usize,
}

struct TransformProxy {
    supervisor: Arc<Supervisor>,
    name: String,
    index: usize,
}

/// Runs `f`, turning a panic (a bug in the host, which must not unwind across `extern "C"`)
/// into a `CallError`.
fn caught<T>(plugin: &str, f: impl FnOnce() -> Result<T, CallError>) -> RResult<T, CallError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(_) => RResult::RErr(CallError {
            kind: CallErrorKind::Failed,
            message: format!("the host's proxy for isolated plugin `{plugin}` panicked").into(),
        }),
    }
}

impl FfiCommand for CommandProxy {
    fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
        caught(self.supervisor.plugin(), || {
            // The worker sends the command's text, copied straight into the string's buffer:
            // the only allocation (an in-process command makes it too). A worker that sends
            // bytes that are not UTF-8 gets them replaced, never read as a `str` unchecked.
            let mut text = Vec::new();
            let target = Target {
                kind: "command",
                name: &self.name,
                index: Some(self.index),
            };
            self.supervisor
                .call(target, Input::Args(args.as_slice()), &mut text)?;
            Ok(RString::from(match String::from_utf8(text) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }))
        })
    }
}

impl FfiTransform for TransformProxy {
    fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError> {
        caught(self.supervisor.plugin(), || {
            // The output is copied straight out of the channel into `output`.
            let target = Target {
                kind: "transform",
                name: &self.name,
                index: Some(self.index),
            };
            self.supervisor
                .call(target, Input::Bytes(input.as_slice()), output)
        })
    }
}

/// The proxy capability for `(kind, name)` of the supervised plugin; `None` for a kind
/// without a wire encoding, or a capability the plugin did not register.
pub(crate) fn export(
    supervisor: &Arc<Supervisor>,
    kind: &str,
    name: &str,
) -> Option<CapabilityExport> {
    let index = supervisor
        .registered()
        .iter()
        .position(|c| c.kind == kind && c.name == name)?;
    let supervisor = supervisor.clone();
    let name = name.to_owned();
    Some(match kind {
        "command" => {
            let object: FfiCommand_TO<'static, RBox<()>> = FfiCommand_TO::from_value(
                CommandProxy {
                    supervisor,
                    name: name.clone(),
                    index,
                },
                TD_Opaque,
            );
            CapabilityExport::new::<CommandKind>(&name, object)
        }
        "transform" => {
            let object: FfiTransform_TO<'static, RBox<()>> = FfiTransform_TO::from_value(
                TransformProxy {
                    supervisor,
                    name: name.clone(),
                    index,
                },
                TD_Opaque,
            );
            CapabilityExport::new::<TransformKind>(&name, object)
        }
        _ => return None,
    })
}
