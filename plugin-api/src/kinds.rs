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
///
/// Two ways to give the output: [`Command::run`] returns a new string (the convenient one, and
/// what a closure `Fn(&[&str]) -> CallResult<String>` is); [`Command::run_into`] appends it to
/// a buffer the caller owns and reuses, so that a command that writes its output piece by
/// piece allocates nothing per call. Implement `run_into` (or register a [`CommandWriter`])
/// for a command called in a hot loop; a host calling [`FfiCommand::call_into`] on a command
/// that only has `run` gets the same text, copied.
pub trait Command: Send + Sync + 'static {
    /// Runs the command.
    fn run(&self, args: &[&str]) -> CallResult<String>;

    /// Runs the command, appending its output to `out` (what [`FfiCommand::call_into`]
    /// runs). On an error, `out` may hold part of the output. The default runs
    /// [`Self::run`] and copies its string.
    fn run_into(&self, args: &[&str], out: &mut RString) -> CallResult<()> {
        out.push_str(&self.run(args)?);
        Ok(())
    }
}

impl<F> Command for F
where
    F: Fn(&[&str]) -> CallResult<String> + Send + Sync + 'static,
{
    fn run(&self, args: &[&str]) -> CallResult<String> {
        self(args)
    }
}

/// A command given as a function that appends its output to a caller's buffer:
/// `init.add_command(name, CommandWriter(|args: &[&str], out: &mut RString| …))`. Called
/// through [`FfiCommand::call_into`] it allocates nothing of its own; through
/// [`FfiCommand::call`] it writes into a new string.
pub struct CommandWriter<F>(pub F);

impl<F> Command for CommandWriter<F>
where
    F: Fn(&[&str], &mut RString) -> CallResult<()> + Send + Sync + 'static,
{
    fn run(&self, args: &[&str]) -> CallResult<String> {
        let mut out = RString::new();
        (self.0)(args, &mut out)?;
        Ok(out.into_string())
    }

    fn run_into(&self, args: &[&str], out: &mut RString) -> CallResult<()> {
        (self.0)(args, out)
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
///
/// A prefix type: methods are only ever added after the last one, each with a default, so
/// that a host and a plugin built against different `plugin-api` 0.1 releases still fit.
#[sabi_trait]
pub trait FfiCommand: Send + Sync {
    /// Runs the command; errors and panics come back as [`CallError`].
    #[sabi(last_prefix_field)]
    fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError>;

    /// Runs the command, appending its output to `out`: a caller that reuses `out` pays no
    /// allocation per call for a command that implements [`Command::run_into`]. Errors and
    /// panics come back as [`CallError`] (and `out` may then hold part of the output).
    ///
    /// Added after `call`: on a plugin built before it, the host runs this default instead —
    /// [`Self::call`], then a copy into `out`.
    fn call_into(&self, args: RSlice<'_, RStr<'_>>, out: &mut RString) -> RResult<(), CallError> {
        self.call(args).map(|text| out.push_str(&text))
    }
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

/// Runs `f` with `args` as `&[&str]`: on the stack for up to [`INLINE_ARGS`] arguments.
#[inline(always)]
fn with_args<T>(args: RSlice<'_, RStr<'_>>, f: impl FnOnce(&[&str]) -> T) -> T {
    if args.len() <= INLINE_ARGS {
        let mut inline = [MaybeUninit::<&str>::uninit(); INLINE_ARGS];
        for (slot, arg) in inline.iter_mut().zip(args.iter()) {
            slot.write(arg.as_str());
        }
        // SAFETY: the first `args.len()` slots were written just above, and
        // `MaybeUninit<&str>` has the layout of `&str`.
        let args =
            unsafe { std::slice::from_raw_parts(inline.as_ptr().cast::<&str>(), args.len()) };
        f(args)
    } else {
        let args: Vec<&str> = args.iter().map(RStr::as_str).collect();
        f(&args)
    }
}

impl<C: Command> FfiCommand for GuardedCommand<C> {
    fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
        guard(|| Ok(RString::from(with_args(args, |args| self.0.run(args))?)))
    }

    fn call_into(&self, args: RSlice<'_, RStr<'_>>, out: &mut RString) -> RResult<(), CallError> {
        guard(|| with_args(args, |args| self.0.run_into(args, out)))
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

/// `FfiCommand` as plugin-api 0.1.0 declared it, before [`FfiCommand::call_into`]: frozen, so
/// that tests (here and in hosts) can hold a newer host to accepting commands of plugins built
/// against it. Not for use in plugins.
#[doc(hidden)]
pub mod before_call_into {
    use abi_stable::sabi_trait;
    use abi_stable::std_types::{RResult, RSlice, RStr, RString};

    use crate::error::CallError;

    /// The FFI face of a command, as of plugin-api 0.1.0.
    #[sabi_trait]
    pub trait FfiCommand: Send + Sync {
        /// Runs the command.
        #[sabi(last_prefix_field)]
        fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError>;
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
    fn command_output_into_a_callers_buffer() {
        let args = [RStr::from("a"), RStr::from("b")];
        let mut out = RString::from("> ");
        // A command that only returns strings: the default copies.
        let joined =
            CommandKind::object(|args: &[&str]| -> CallResult<String> { Ok(args.join("+")) });
        joined
            .call_into(RSlice::from_slice(&args), &mut out)
            .unwrap();
        assert_eq!(out, "> a+b");
        // A writer: the same text both ways.
        let writer = CommandKind::object(CommandWriter(
            |args: &[&str], out: &mut RString| -> CallResult<()> {
                match args.first() {
                    Some(&"panic") => panic!("asked to"),
                    Some(&"fail") => {
                        out.push_str("part");
                        Err("asked to fail".into())
                    }
                    _ => {
                        for arg in args {
                            out.push_str(arg);
                        }
                        Ok(())
                    }
                }
            },
        ));
        out.clear();
        writer
            .call_into(RSlice::from_slice(&args), &mut out)
            .unwrap();
        writer
            .call_into(RSlice::from_slice(&args), &mut out)
            .unwrap();
        assert_eq!(out, "abab", "appended");
        assert_eq!(writer.call(RSlice::from_slice(&args)).unwrap(), "ab");
        let many: Vec<RStr<'_>> = (0..20).map(|_| RStr::from("x")).collect();
        out.clear();
        writer
            .call_into(RSlice::from_slice(&many), &mut out)
            .unwrap();
        assert_eq!(out.len(), 20);
        let err = writer
            .call_into(RSlice::from_slice(&[RStr::from("panic")]), &mut out)
            .unwrap_err();
        assert_eq!(err.kind, CallErrorKind::Panicked);
        out.clear();
        let err = writer
            .call_into(RSlice::from_slice(&[RStr::from("fail")]), &mut out)
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str(), out.as_str()),
            (CallErrorKind::Failed, "asked to fail", "part")
        );
    }

    /// The vtable of a command made before `call_into` existed lacks it: `call_into` then
    /// runs the default (`call`, then a copy), as `abi_stable` does for a method added after
    /// the last prefix field.
    #[test]
    fn call_into_on_a_command_built_before_it_runs_the_default() {
        use abi_stable::std_types::RBox;
        use abi_stable::StableAbi;
        struct Shout;
        impl crate::kinds::before_call_into::FfiCommand for Shout {
            fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
                RResult::ROk(
                    args.iter()
                        .map(|a| a.as_str().to_uppercase())
                        .collect::<String>()
                        .into(),
                )
            }
        }
        type Old = crate::kinds::before_call_into::FfiCommand_TO<'static, RBox<()>>;
        type New = FfiCommand_TO<'static, RBox<()>>;
        assert_eq!(
            (
                <Old as StableAbi>::LAYOUT.size(),
                <Old as StableAbi>::LAYOUT.alignment()
            ),
            (
                <New as StableAbi>::LAYOUT.size(),
                <New as StableAbi>::LAYOUT.alignment()
            )
        );
        let old: Old = crate::kinds::before_call_into::FfiCommand_TO::from_value(Shout, TD_Opaque);
        // SAFETY: what the host does with an older plugin's command once its layout is found
        // to be a prefix of this one (`host::registry`): the same `RObject`, whose vtable is a
        // prefix type that tells which methods it has.
        let new: New = unsafe { std::mem::transmute::<Old, New>(old) };
        let mut out = RString::from("> ");
        new.call_into(
            RSlice::from_slice(&[RStr::from("a"), RStr::from("b")]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, "> AB");
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
