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

use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use abi_stable::marker_type::ErasedObject;
use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::RRef;
use abi_stable::StableAbi;

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

    /// The command's own `call_into` as a plain function and the object it runs on, for a
    /// caller that makes many calls ([`FfiCommand_TO::direct`]): no dispatch through this
    /// vtable per call.
    ///
    /// Added after `call_into`: a plugin built before it answers `RNone`, and
    /// [`FfiCommand_TO::direct`] then calls through the vtable.
    fn entry(&self) -> ROption<CommandEntry<'_>> {
        ROption::RNone
    }
}

/// What [`FfiCommand::entry`] returns: a command's `call_into` and the object it runs on.
///
/// Only plugin-api makes one (its fields are private), for an object of
/// [`CommandKind::object`], and it borrows that object. [`FfiCommand_TO::direct`] uses one
/// only if it names the very object asked (by address; zero-sized commands all share one);
/// otherwise it calls through the vtable.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct CommandEntry<'a> {
    this: *const c_void,
    // Spelled out: `StableAbi`'s derive reads a function pointer's type only from the field.
    call_into: unsafe extern "C" fn(
        *const c_void,
        RSlice<'_, RStr<'_>>,
        &mut RString,
    ) -> RResult<(), CallError>,
    /// An entry is valid only while the object it was made from lives.
    object: PhantomData<&'a ()>,
}

/// A command's `call_into`, called straight through its function pointer: what
/// [`FfiCommand_TO::direct`] gives. It borrows the command object, which keeps the object,
/// and the plugin it came from, alive while it is held.
///
/// Each call is one indirect call into the plugin's code, with the same panic guard and the
/// same results as [`FfiCommand::call_into`]; for a caller that makes many calls, as a
/// benchmark or a hot loop does, it saves the trait object's dispatch per call.
#[derive(Clone, Copy)]
pub struct DirectCommand<'a> {
    /// The plugin's own entry, or one `direct` made for the object's vtable.
    entry: CommandEntry<'a>,
    direct: bool,
}

// SAFETY: a `DirectCommand` only calls its command's `call_into` on the command object it
// borrows, which is `Send + Sync` (`FfiCommand: Send + Sync`, and `Command` requires both):
// calling it from any thread, or from several at once, is what the object itself allows.
unsafe impl Send for DirectCommand<'_> {}
// SAFETY: as for `Send` above.
unsafe impl Sync for DirectCommand<'_> {}

/// The address of a trait object's erased object: what an entry made for it holds.
fn erased_address(object: RRef<'_, ErasedObject<()>>) -> *const c_void {
    object.as_ptr().cast()
}

impl FfiCommand_TO<'static, RBox<()>> {
    /// This command's `call_into` as a [`DirectCommand`]: for many calls in a row, each one
    /// an indirect call into the plugin with no dispatch through the trait object's vtable.
    /// A command from a plugin built before direct calls existed, or whose object plugin-api
    /// did not make, is called through the vtable, with the same results.
    pub fn direct(&self) -> DirectCommand<'_> {
        match self.entry() {
            // What makes an entry safe to call is that only plugin-api makes one (its fields
            // are private), pairing an object with its own function, and that it borrows
            // that object (`CommandEntry<'a>`): whatever an `entry` method returns, the
            // object it names outlives this borrow. The address check is about behaviour:
            // an implementation that hands out another object's entry gets its own
            // `call_into` called instead. It cannot tell apart zero-sized commands, which
            // all live at one dangling address; those hold no data to misuse.
            ROption::RSome(entry) if entry.this == erased_address(self.obj.sabi_erased_ref()) => {
                DirectCommand {
                    entry,
                    direct: true,
                }
            }
            _ => DirectCommand {
                entry: CommandEntry {
                    this: (self as *const Self).cast(),
                    call_into: call_into_through_vtable,
                    object: PhantomData,
                },
                direct: false,
            },
        }
    }
}

impl DirectCommand<'_> {
    /// Runs the command, appending its output to `out`: [`FfiCommand::call_into`], called
    /// directly.
    #[inline]
    pub fn call_into(
        &self,
        args: RSlice<'_, RStr<'_>>,
        out: &mut RString,
    ) -> RResult<(), CallError> {
        // SAFETY: `direct` paired `this` and the function as `call_into` requires: either an
        // entry, which only `GuardedCommand::entry` makes, for a `GuardedCommand<C>` and its
        // own `direct_call_into::<C>`, alive for as long as the entry's lifetime, which
        // outlives this value's borrow (`direct_call_into`'s contract); or this value's
        // borrowed `FfiCommand_TO` and `call_into_through_vtable`.
        unsafe { (self.entry.call_into)(self.entry.this, args, out) }
    }

    /// Whether calls go straight to the plugin's function: `false` for a command whose
    /// plugin predates direct entries, or whose object plugin-api did not make (an isolated
    /// plugin's proxy), which is called through its vtable.
    pub fn is_direct(&self) -> bool {
        self.direct
    }
}

/// The `call_into` of a command called through its object's vtable.
///
/// # Safety
///
/// `this` points to a live `FfiCommand_TO<'static, RBox<()>>`.
unsafe extern "C" fn call_into_through_vtable(
    this: *const c_void,
    args: RSlice<'_, RStr<'_>>,
    out: &mut RString,
) -> RResult<(), CallError> {
    // SAFETY: the caller's contract.
    let object = unsafe { &*this.cast::<FfiCommand_TO<'static, RBox<()>>>() };
    object.call_into(args, out)
}

/// The FFI face of a [`Transform`].
#[sabi_trait]
pub trait FfiTransform: Send + Sync {
    /// Appends the transformed `input` to `output`; errors and panics come back as [`CallError`].
    #[sabi(last_prefix_field)]
    fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError>;

    /// The transform's own `apply` as a plain function and the object it runs on, for a
    /// caller that makes many calls ([`FfiTransform_TO::direct`]).
    ///
    /// Added after `apply`: a plugin built before it answers `RNone`, and
    /// [`FfiTransform_TO::direct`] then calls through the vtable.
    fn entry(&self) -> ROption<TransformEntry<'_>> {
        ROption::RNone
    }
}

/// What [`FfiTransform::entry`] returns: a transform's `apply` and the object it runs on; as
/// [`CommandEntry`], made only by plugin-api for an object of [`TransformKind::object`].
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct TransformEntry<'a> {
    this: *const c_void,
    apply: unsafe extern "C" fn(
        *const c_void,
        RSlice<'_, u8>,
        &mut RVec<u8>,
    ) -> RResult<(), CallError>,
    /// An entry is valid only while the object it was made from lives.
    object: PhantomData<&'a ()>,
}

/// A transform's `apply`, called straight through its function pointer: what
/// [`FfiTransform_TO::direct`] gives; see [`DirectCommand`].
#[derive(Clone, Copy)]
pub struct DirectTransform<'a> {
    /// The plugin's own entry, or one `direct` made for the object's vtable.
    entry: TransformEntry<'a>,
    direct: bool,
}

// SAFETY: as for `DirectCommand`: `FfiTransform: Send + Sync`, and `Transform` requires both.
unsafe impl Send for DirectTransform<'_> {}
// SAFETY: as for `Send` above.
unsafe impl Sync for DirectTransform<'_> {}

impl FfiTransform_TO<'static, RBox<()>> {
    /// This transform's `apply` as a [`DirectTransform`]; see [`FfiCommand_TO::direct`].
    pub fn direct(&self) -> DirectTransform<'_> {
        match self.entry() {
            // As in `FfiCommand_TO::direct`.
            ROption::RSome(entry) if entry.this == erased_address(self.obj.sabi_erased_ref()) => {
                DirectTransform {
                    entry,
                    direct: true,
                }
            }
            _ => DirectTransform {
                entry: TransformEntry {
                    this: (self as *const Self).cast(),
                    apply: apply_through_vtable,
                    object: PhantomData,
                },
                direct: false,
            },
        }
    }
}

impl DirectTransform<'_> {
    /// Appends the transformed `input` to `output`: [`FfiTransform::apply`], called directly.
    #[inline]
    pub fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError> {
        // SAFETY: as in `DirectCommand::call_into`.
        unsafe { (self.entry.apply)(self.entry.this, input, output) }
    }

    /// Whether calls go straight to the plugin's function; see [`DirectCommand::is_direct`].
    pub fn is_direct(&self) -> bool {
        self.direct
    }
}

/// The `apply` of a transform called through its object's vtable.
///
/// # Safety
///
/// `this` points to a live `FfiTransform_TO<'static, RBox<()>>`.
unsafe extern "C" fn apply_through_vtable(
    this: *const c_void,
    input: RSlice<'_, u8>,
    output: &mut RVec<u8>,
) -> RResult<(), CallError> {
    // SAFETY: the caller's contract.
    let object = unsafe { &*this.cast::<FfiTransform_TO<'static, RBox<()>>>() };
    object.apply(input, output)
}

/// The most arguments a command call passes without allocating.
const INLINE_ARGS: usize = 16;

struct GuardedCommand<C>(C);

/// Runs `f` with `args` as `&[&str]`: on the stack for up to [`INLINE_ARGS`] arguments.
#[inline(always)]
fn with_args<T>(args: RSlice<'_, RStr<'_>>, f: impl FnOnce(&[&str]) -> T) -> T {
    if args.len() <= INLINE_ARGS {
        let mut inline = [MaybeUninit::<&str>::uninit(); INLINE_ARGS];
        // One argument at a time: a command gets a few, and a vectorised copy's setup costs
        // more than copying them.
        let mut i = 0;
        while i < args.len() {
            inline[i].write(args[i].as_str());
            i += 1;
        }
        // SAFETY: the first `args.len()` slots were written just above, and
        // `MaybeUninit<&str>` has the layout of `&str`.
        let args =
            unsafe { std::slice::from_raw_parts(inline.as_ptr().cast::<&str>(), args.len()) };
        f(args)
    } else {
        with_many_args(args, f)
    }
}

/// [`with_args`] for more than [`INLINE_ARGS`] arguments, in a vector: out of line, so that
/// the common case keeps few registers to save.
#[cold]
#[inline(never)]
fn with_many_args<T>(args: RSlice<'_, RStr<'_>>, f: impl FnOnce(&[&str]) -> T) -> T {
    let args: Vec<&str> = args.iter().map(RStr::as_str).collect();
    f(&args)
}

impl<C: Command> GuardedCommand<C> {
    /// `call_into`, guarded: what the vtable's method and the direct entry both run.
    #[inline(always)]
    fn guarded_call_into(
        &self,
        args: RSlice<'_, RStr<'_>>,
        out: &mut RString,
    ) -> RResult<(), CallError> {
        guard(|| with_args(args, |args| self.0.run_into(args, out)))
    }
}

impl<C: Command> FfiCommand for GuardedCommand<C> {
    fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
        guard(|| Ok(RString::from(with_args(args, |args| self.0.run(args))?)))
    }

    fn call_into(&self, args: RSlice<'_, RStr<'_>>, out: &mut RString) -> RResult<(), CallError> {
        self.guarded_call_into(args, out)
    }

    fn entry(&self) -> ROption<CommandEntry<'_>> {
        ROption::RSome(CommandEntry {
            this: (self as *const Self).cast(),
            call_into: direct_call_into::<C>,
            object: PhantomData,
        })
    }
}

/// [`GuardedCommand::call_into`] as a plain function, for [`CommandEntry`].
///
/// # Safety
///
/// `this` points to a live `GuardedCommand<C>`.
unsafe extern "C" fn direct_call_into<C: Command>(
    this: *const c_void,
    args: RSlice<'_, RStr<'_>>,
    out: &mut RString,
) -> RResult<(), CallError> {
    // SAFETY: the caller's contract.
    let command = unsafe { &*this.cast::<GuardedCommand<C>>() };
    command.guarded_call_into(args, out)
}

struct GuardedTransform<T>(T);

impl<T: Transform> GuardedTransform<T> {
    /// `apply`, guarded: what the vtable's method and the direct entry both run.
    #[inline(always)]
    fn guarded_apply(
        &self,
        input: RSlice<'_, u8>,
        output: &mut RVec<u8>,
    ) -> RResult<(), CallError> {
        guard(|| self.0.apply(input.as_slice(), output))
    }
}

impl<T: Transform> FfiTransform for GuardedTransform<T> {
    fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError> {
        self.guarded_apply(input, output)
    }

    fn entry(&self) -> ROption<TransformEntry<'_>> {
        ROption::RSome(TransformEntry {
            this: (self as *const Self).cast(),
            apply: direct_apply::<T>,
            object: PhantomData,
        })
    }
}

/// [`GuardedTransform::apply`] as a plain function, for [`TransformEntry`].
///
/// # Safety
///
/// `this` points to a live `GuardedTransform<T>`.
unsafe extern "C" fn direct_apply<T: Transform>(
    this: *const c_void,
    input: RSlice<'_, u8>,
    output: &mut RVec<u8>,
) -> RResult<(), CallError> {
    // SAFETY: the caller's contract.
    let transform = unsafe { &*this.cast::<GuardedTransform<T>>() };
    transform.guarded_apply(input, output)
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

/// `FfiCommand` and `FfiTransform` as plugin-api declared them before [`FfiCommand::entry`]
/// and [`FfiTransform::entry`]: frozen, so that tests can hold a newer host to accepting
/// capabilities of plugins built against them. Not for use in plugins.
#[doc(hidden)]
pub mod before_entry {
    use abi_stable::sabi_trait;
    use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};

    use crate::error::CallError;

    /// The FFI face of a command, before `entry`: what plugins built since `call_into` and
    /// before direct entries have.
    #[sabi_trait]
    pub trait FfiCommand: Send + Sync {
        /// Runs the command.
        #[sabi(last_prefix_field)]
        fn call(&self, args: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError>;

        /// Runs the command, appending its output to `out`.
        fn call_into(
            &self,
            args: RSlice<'_, RStr<'_>>,
            out: &mut RString,
        ) -> RResult<(), CallError> {
            self.call(args).map(|text| out.push_str(&text))
        }
    }

    /// The FFI face of a transform, before `entry`.
    #[sabi_trait]
    pub trait FfiTransform: Send + Sync {
        /// Appends the transformed `input` to `output`.
        #[sabi(last_prefix_field)]
        fn apply(&self, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> RResult<(), CallError>;
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

    /// The direct entry is the object's own: the same output, errors and panics, without the
    /// vtable (`entry` answers), and it holds up under several threads at once.
    #[test]
    fn direct_entries_answer_as_their_objects() {
        let writer = CommandKind::object(CommandWriter(
            |args: &[&str], out: &mut RString| -> CallResult<()> {
                match args.first() {
                    Some(&"panic") => panic!("asked to"),
                    Some(&"fail") => {
                        out.push_str("part");
                        Err("asked to fail".into())
                    }
                    _ => {
                        out.push_str(&args.concat());
                        Ok(())
                    }
                }
            },
        ));
        assert!(writer.entry().is_some(), "made by `CommandKind::object`");
        let direct = writer.direct();
        assert!(direct.is_direct());
        let many: Vec<RStr<'_>> = (0..20).map(|_| RStr::from("x")).collect();
        for args in [
            &[RStr::from("a"), RStr::from("b")][..],
            &[],
            &many,
            &[RStr::from("fail")],
            &[RStr::from("panic")],
        ] {
            let (mut a, mut b) = (RString::from("> "), RString::from("> "));
            let expected = writer.call_into(RSlice::from_slice(args), &mut a);
            let got = direct.call_into(RSlice::from_slice(args), &mut b);
            assert_eq!((got, b), (expected, a));
        }
        let err = direct
            .call_into(
                RSlice::from_slice(&[RStr::from("panic")]),
                &mut RString::new(),
            )
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (CallErrorKind::Panicked, "asked to")
        );
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    let mut out = RString::new();
                    let arg = t.to_string();
                    for _ in 0..1000 {
                        out.clear();
                        direct
                            .call_into(RSlice::from_slice(&[RStr::from(arg.as_str())]), &mut out)
                            .unwrap();
                        assert_eq!(out, arg);
                    }
                });
            }
        });

        let t = TransformKind::object(|input: &[u8], out: &mut RVec<u8>| -> CallResult<()> {
            if input == b"panic" {
                panic!("transform asked to");
            }
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            Ok(())
        });
        assert!(t.entry().is_some(), "made by `TransformKind::object`");
        let direct = t.direct();
        assert!(direct.is_direct());
        let mut out = RVec::from(b"> ".to_vec());
        direct.apply(RSlice::from_slice(b"abc"), &mut out).unwrap();
        assert_eq!(out.as_slice(), b"> ABC");
        let err = direct
            .apply(RSlice::from_slice(b"panic"), &mut out)
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (CallErrorKind::Panicked, "transform asked to")
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
        // Its vtable lacks `entry` as well: the direct entry calls through the vtable.
        assert!(new.entry().is_none());
        assert!(!new.direct().is_direct());
        new.direct()
            .call_into(RSlice::from_slice(&[RStr::from("c")]), &mut out)
            .unwrap();
        assert_eq!(out, "> ABC");
    }

    /// An implementation of `entry` that hands out another object's entry does not get it
    /// used: `direct` calls the object through its own vtable.
    #[test]
    fn an_entry_made_for_another_object_is_not_used() {
        struct Forwarder {
            inner: FfiCommand_TO<'static, RBox<()>>,
        }
        impl FfiCommand for Forwarder {
            fn call(&self, _: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
                RResult::ROk("forwarder".into())
            }
            fn call_into(
                &self,
                _: RSlice<'_, RStr<'_>>,
                out: &mut RString,
            ) -> RResult<(), CallError> {
                out.push_str("forwarder");
                RResult::ROk(())
            }
            fn entry(&self) -> ROption<CommandEntry<'_>> {
                self.inner.entry()
            }
        }
        let inner = CommandKind::object(|_: &[&str]| -> CallResult<String> { Ok("inner".into()) });
        let outer = FfiCommand_TO::from_value(Forwarder { inner }, TD_Opaque);
        assert!(outer.entry().is_some(), "it does hand one out");
        let direct = outer.direct();
        assert!(!direct.is_direct());
        let mut out = RString::new();
        direct.call_into(RSlice::from_slice(&[]), &mut out).unwrap();
        assert_eq!(out, "forwarder");
    }

    /// A command made since `call_into` but before `entry`: its direct entry calls through
    /// the vtable, into its own `call_into`.
    #[test]
    fn a_command_built_before_entry_is_called_through_its_vtable() {
        use abi_stable::StableAbi;
        struct Writer;
        impl crate::kinds::before_entry::FfiCommand for Writer {
            fn call(&self, _: RSlice<'_, RStr<'_>>) -> RResult<RString, CallError> {
                RResult::ROk("from call".into())
            }
            fn call_into(
                &self,
                args: RSlice<'_, RStr<'_>>,
                out: &mut RString,
            ) -> RResult<(), CallError> {
                out.push_str(&format!("{} into", args.len()));
                RResult::ROk(())
            }
        }
        type Old = crate::kinds::before_entry::FfiCommand_TO<'static, RBox<()>>;
        type New = FfiCommand_TO<'static, RBox<()>>;
        // The new layout extends the old one (what the host's check accepts).
        abi_stable::abi_stability::abi_checking::check_layout_compatibility(
            <Old as StableAbi>::LAYOUT,
            <New as StableAbi>::LAYOUT,
        )
        .unwrap();
        let old: Old = crate::kinds::before_entry::FfiCommand_TO::from_value(Writer, TD_Opaque);
        // SAFETY: as in `call_into_on_a_command_built_before_it_runs_the_default`.
        let new: New = unsafe { std::mem::transmute::<Old, New>(old) };
        assert!(new.entry().is_none());
        let direct = new.direct();
        assert!(!direct.is_direct());
        let mut out = RString::new();
        direct
            .call_into(RSlice::from_slice(&[RStr::from("a")]), &mut out)
            .unwrap();
        assert_eq!(out, "1 into");
    }

    /// A transform made before `entry` existed: its direct entry calls through the vtable.
    #[test]
    fn a_transform_built_before_entry_is_called_through_its_vtable() {
        use abi_stable::std_types::RBox;
        use abi_stable::StableAbi;
        struct Upper;
        impl crate::kinds::before_entry::FfiTransform for Upper {
            fn apply(
                &self,
                input: RSlice<'_, u8>,
                output: &mut RVec<u8>,
            ) -> RResult<(), CallError> {
                output.extend(input.iter().map(u8::to_ascii_uppercase));
                RResult::ROk(())
            }
        }
        type Old = crate::kinds::before_entry::FfiTransform_TO<'static, RBox<()>>;
        type New = FfiTransform_TO<'static, RBox<()>>;
        // The new layout extends the old one (what the host's check accepts).
        abi_stable::abi_stability::abi_checking::check_layout_compatibility(
            <Old as StableAbi>::LAYOUT,
            <New as StableAbi>::LAYOUT,
        )
        .unwrap();
        let old: Old = crate::kinds::before_entry::FfiTransform_TO::from_value(Upper, TD_Opaque);
        // SAFETY: as in `call_into_on_a_command_built_before_it_runs_the_default`.
        let new: New = unsafe { std::mem::transmute::<Old, New>(old) };
        assert!(new.entry().is_none());
        let direct = new.direct();
        assert!(!direct.is_direct());
        let mut out = RVec::new();
        direct.apply(RSlice::from_slice(b"ab"), &mut out).unwrap();
        assert_eq!(out.as_slice(), b"AB");
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
