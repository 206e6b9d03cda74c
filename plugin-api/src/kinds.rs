//! The two capability kinds the demo CLI knows: `command` and `transform`.
//!
//! Each kind is an author-facing Rust trait ([`Command`], [`Transform`]), an FFI-safe
//! `#[sabi_trait]` object the host calls ([`FfiCommand_TO`], [`FfiTransform_TO`]) and a
//! [`CapabilityKind`] marker tying the two to a name. The FFI wrapper runs the author's code
//! under [`guard`], so a panic comes back as a [`CallError`] instead of unwinding into the host.
//! Applications add kinds of their own by following the same pattern.

// The `sabi_trait` macro generates items (`FfiCommand_TO`, vtables) without docs.
#![allow(missing_docs)]
// abi_stable 0.11's `sabi_trait` expansion puts impls inside a `const` block.
#![allow(non_local_definitions)]

use std::mem::MaybeUninit;

use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};

use crate::capability::CapabilityKind;
use crate::error::{guard, CallError, CallResult};

/// A named command: arguments in, text out.
pub trait Command: Send + Sync + 'static {
    /// Runs the command.
    fn run(&self, args: &[&str]) -> CallResult<String>;
}

impl<F> Command for F
where
    F: Fn(&[&str]) -> CallResult<String> + Send + Sync + 'static,
{
    fn run(&self, args: &[&str]) -> CallResult<String> {
        self(args)
    }
}

/// A byte-stream transform.
///
/// The host feeds the stream in chunks that end at a line boundary (`\n`), except the last
/// chunk of a stream without a final newline and lines longer than the host's chunk limit;
/// a line-oriented transform can therefore work chunk by chunk without keeping state.
///
/// Append to `output` with `extend_from_copy_slice`, `push` or `std::io::Write`:
/// `RVec::extend_from_slice` clones element by element, which is far slower for bytes.
pub trait Transform: Send + Sync + 'static {
    /// Appends the transformed `input` to `output`.
    fn apply(&self, input: &[u8], output: &mut RVec<u8>) -> CallResult<()>;
}

impl<F> Transform for F
where
    F: Fn(&[u8], &mut RVec<u8>) -> CallResult<()> + Send + Sync + 'static,
{
    fn apply(&self, input: &[u8], output: &mut RVec<u8>) -> CallResult<()> {
        self(input, output)
    }
}

/// The FFI face of a [`Command`].
#[sabi_trait]
pub trait FfiCommand: Send + Sync {
    /// Runs the command; errors and panics come back as [`CallError`].
    #[sabi(last_prefix_field)]
    fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError>;
}

/// The FFI face of a [`Transform`].
#[sabi_trait]
pub trait FfiTransform: Send + Sync {
    /// Appends the transformed `input` to `output`; errors and panics come back as [`CallError`].
    #[sabi(last_prefix_field)]
    fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError>;
}

/// The most arguments a command call passes without allocating.
const INLINE_ARGS: usize = 16;

struct GuardedCommand<C>(C);

impl<C: Command> FfiCommand for GuardedCommand<C> {
    fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
        guard(|| {
            let output = if args.len() <= INLINE_ARGS {
                let mut inline = [MaybeUninit::<&str>::uninit(); INLINE_ARGS];
                for (slot, arg) in inline.iter_mut().zip(args.iter()) {
                    slot.write(arg.as_str());
                }
                // SAFETY: the first `args.len()` slots were written just above, and
                // `MaybeUninit<&str>` has the layout of `&str`.
                let args = unsafe {
                    std::slice::from_raw_parts(inline.as_ptr().cast::<&str>(), args.len())
                };
                self.0.run(args)?
            } else {
                let args: Vec<&str> = args.iter().map(RStr::as_str).collect();
                self.0.run(&args)?
            };
            Ok(RString::from(output))
        })
    }
}

struct GuardedTransform<T>(T);

impl<T: Transform> FfiTransform for GuardedTransform<T> {
    fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError> {
        guard(|| self.0.apply(input.as_slice(), output))
    }
}

/// The `command` kind: a name and arguments in, text out.
pub struct CommandKind;

impl CapabilityKind for CommandKind {
    const KIND: &'static str = "command";
    type Object = FfiCommand_TO<'static, RBox<()>>;
}

impl CommandKind {
    /// Wraps a [`Command`] into its FFI object, with the panic guard.
    pub fn object(command: impl Command) -> FfiCommand_TO<'static, RBox<()>> {
        FfiCommand_TO::from_value(GuardedCommand(command), TD_Opaque)
    }
}

/// The `transform` kind: bytes in, bytes out.
pub struct TransformKind;

impl CapabilityKind for TransformKind {
    const KIND: &'static str = "transform";
    type Object = FfiTransform_TO<'static, RBox<()>>;
}

impl TransformKind {
    /// Wraps a [`Transform`] into its FFI object, with the panic guard.
    pub fn object(transform: impl Transform) -> FfiTransform_TO<'static, RBox<()>> {
        FfiTransform_TO::from_value(GuardedTransform(transform), TD_Opaque)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CallErrorKind;

    #[test]
    fn command_object_guards_panics() {
        let cmd = CommandKind::object(|args: &[&str]| -> CallResult<String> {
            match args.first() {
                Some(&"panic") => panic!("asked to"),
                Some(&"fail") => Err("asked to fail".into()),
                _ => Ok(args.join("+")),
            }
        });
        let args = [RStr::from("a"), RStr::from("b")];
        assert_eq!(cmd.call(RSlice::from_slice(&args)).unwrap(), "a+b");
        let many: Vec<RStr<'_>> = (0..20).map(|_| RStr::from("x")).collect();
        assert_eq!(cmd.call(RSlice::from_slice(&many)).unwrap().len(), 39);
        let err = cmd
            .call(RSlice::from_slice(&[RStr::from("panic")]))
            .unwrap_err();
        assert_eq!(err.kind, CallErrorKind::Panicked);
        let err = cmd
            .call(RSlice::from_slice(&[RStr::from("fail")]))
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (CallErrorKind::Failed, "asked to fail")
        );
    }

    #[test]
    fn transform_object_appends() {
        let t = TransformKind::object(|input: &[u8], out: &mut RVec<u8>| -> CallResult<()> {
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            Ok(())
        });
        let mut out = RVec::new();
        t.apply(RSlice::from_slice(b"abc"), &mut out).unwrap();
        assert_eq!(out.as_slice(), b"ABC");
    }
}
