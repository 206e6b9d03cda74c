//! The `greeter` capability kind, shared by `greeter-app` and every plugin written for it.
//!
//! A kind is three things: the Rust trait authors implement ([`Greeter`]), the FFI-safe
//! object the host calls ([`FfiGreeter`], through `FfiGreeter_TO`), and a marker tying the
//! two to a name ([`GreeterKind`]). The host compares the layout of each greeter a plugin
//! registers with the layout of [`GreeterKind::Object`](plugin_api::CapabilityKind::Object)
//! as compiled into the application, so both must come from this one crate.

// abi_stable 0.11's `#[sabi_trait]` expansion puts impls inside a `const` block.
#![allow(non_local_definitions)]

use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RStr, RString};
use plugin_api::{guard, CallError, CallResult, CapabilityKind};

/// Greets someone: what a plugin author implements (a closure will do).
pub trait Greeter: Send + Sync + 'static {
    /// The greeting for `who`.
    fn greet(&self, who: &str) -> CallResult<String>;
}

impl<F> Greeter for F
where
    F: Fn(&str) -> CallResult<String> + Send + Sync + 'static,
{
    fn greet(&self, who: &str) -> CallResult<String> {
        self(who)
    }
}

/// The FFI face of a [`Greeter`]: what crosses the boundary and what the application calls.
#[sabi_trait]
pub trait FfiGreeter: Send + Sync {
    /// The greeting for `who`; errors and panics come back as [`CallError`].
    #[sabi(last_prefix_field)]
    fn greet(&self, who: RStr<'_>) -> RResult<RString, CallError>;
}

/// Runs the author's [`Greeter`] under [`guard`], so a panic comes back as an error instead
/// of unwinding into the application.
struct Guarded<G>(G);

impl<G: Greeter> FfiGreeter for Guarded<G> {
    fn greet(&self, who: RStr<'_>) -> RResult<RString, CallError> {
        guard(|| self.0.greet(who.as_str()).map(RString::from))
    }
}

/// The `greeter` capability kind.
pub struct GreeterKind;

impl CapabilityKind for GreeterKind {
    const KIND: &'static str = "greeter";
    type Object = FfiGreeter_TO<'static, RBox<()>>;
}

impl GreeterKind {
    /// Wraps a [`Greeter`] into the object a plugin registers, with the panic guard.
    pub fn object(greeter: impl Greeter) -> FfiGreeter_TO<'static, RBox<()>> {
        FfiGreeter_TO::from_value(Guarded(greeter), TD_Opaque)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::CallErrorKind;

    #[test]
    fn greets_and_catches_panics() {
        let greeter = GreeterKind::object(|who: &str| -> CallResult<String> {
            match who {
                "" => panic!("nobody to greet"),
                who => Ok(format!("hi, {who}")),
            }
        });
        assert_eq!(greeter.greet("Ada".into()).unwrap(), "hi, Ada");
        let err = greeter.greet("".into()).unwrap_err();
        assert_eq!(err.kind, CallErrorKind::Panicked);
    }
}
