//! Errors that cross the boundary, and the panic guard that produces them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RString};
use abi_stable::StableAbi;

/// How a call into plugin code went wrong.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorKind {
    /// The plugin returned an error.
    Failed,
    /// The plugin panicked; the panic was caught on the plugin side.
    Panicked,
}

/// An error returned across the boundary by plugin code (registration or a capability call).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct CallError {
    /// Whether it failed or panicked.
    pub kind: CallErrorKind,
    /// The error's message (with its `source()` chain), or the panic message.
    pub message: RString,
}

/// What [`crate::export_plugin!`]'s registration function returns across the boundary.
pub type RegisterError = CallError;

/// The result type plugin authors return from capabilities.
pub type CallResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The result type of a plugin's registration function.
pub type RegisterResult = CallResult<()>;

impl CallError {
    /// The message as UTF-8. It was written by plugin code, which nothing forces to send
    /// valid UTF-8: invalid bytes become U+FFFD instead of being read as a `str` unchecked.
    pub fn message_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.message.as_bytes())
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            CallErrorKind::Failed => f.write_str(&self.message_lossy()),
            CallErrorKind::Panicked => write!(f, "panicked: {}", self.message_lossy()),
        }
    }
}

impl std::error::Error for CallError {}

/// Runs plugin code, turning both its error and its panic into a [`CallError`], so that
/// nothing unwinds across `extern "C"`.
///
/// Capability kinds defined by applications use it in their FFI wrappers the same way the
/// built-in [`crate::CommandKind`] and [`crate::TransformKind`] do.
#[inline(always)]
pub fn guard<T>(f: impl FnOnce() -> CallResult<T>) -> RResult<T, CallError> {
    // Only the call and the `Ok` arm are inlined into each capability's wrapper; rendering an
    // error and reading a panic live in cold functions of their own. The error is rendered
    // (and dropped) inside the guard too: its `Display`, `source` and `Drop` are plugin code
    // and may panic as well.
    match catch_unwind(AssertUnwindSafe(|| f().map_err(rendered))) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(message)) => RResult::RErr(CallError {
            kind: CallErrorKind::Failed,
            message: message.into(),
        }),
        Err(payload) => RResult::RErr(panicked(payload)),
    }
}

/// A capability's error as a user wants to read it, `error: source: source…`; the error is
/// dropped here.
#[cold]
#[inline(never)]
fn rendered(error: Box<dyn std::error::Error + Send + Sync>) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The [`CallError`] for a caught panic.
#[cold]
#[inline(never)]
fn panicked(payload: Box<dyn std::any::Any + Send>) -> CallError {
    let message = panic_message(&*payload);
    // A payload whose destructor panics too: that second panic is caught (and its own
    // payload leaked) rather than let through.
    if let Err(second) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(second);
    }
    CallError {
        kind: CallErrorKind::Panicked,
        message: message.into(),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic payload is not a string)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_maps_errors_and_panics() {
        assert_eq!(guard(|| Ok(3)), RResult::ROk(3));
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot save")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let failed = guard::<()>(|| Err(Box::new(Outer(std::io::Error::other("disk on fire")))))
            .unwrap_err();
        assert_eq!(failed.kind, CallErrorKind::Failed);
        assert_eq!(failed.message, "cannot save: disk on fire");
        // An error whose `Display` panics is caught as well.
        #[derive(Debug)]
        struct Rude;
        impl std::fmt::Display for Rude {
            fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                panic!("display panicked")
            }
        }
        impl std::error::Error for Rude {}
        let rude = guard::<()>(|| Err(Box::new(Rude))).unwrap_err();
        assert_eq!(
            (rude.kind, rude.message.as_str()),
            (CallErrorKind::Panicked, "display panicked")
        );
        let panicked = guard::<()>(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panicked.kind, CallErrorKind::Panicked);
        assert_eq!(panicked.to_string(), "panicked: boom 7");
    }
}

// By hand, not derived: the message is plugin bytes that nothing forces to be UTF-8, and
// `RString`'s own `Debug` reads them as a `str`. Shown as `message_lossy` does.
impl std::fmt::Debug for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallError")
            .field("kind", &self.kind)
            .field("message", &self.message_lossy())
            .finish()
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;
    use abi_stable::std_types::{RStr, RVec};

    #[test]
    fn plugin_bytes_that_are_not_utf8_are_shown_replaced() {
        // SAFETY: deliberately not UTF-8, as a plugin may send it: only its bytes are read.
        let message = unsafe { RString::from_utf8_unchecked(RVec::from(b"cut \xf0".to_vec())) };
        let error = CallError {
            kind: CallErrorKind::Failed,
            message,
        };
        let shown = format!("{error:?}");
        assert!(shown.contains("cut \u{fffd}"), "{shown}");
        let bytes = b"\xffgone";
        // SAFETY: as above.
        let text = unsafe { RStr::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        let record = crate::logger::LogRecord {
            level: crate::logger::LogLevel::Info,
            target: text,
            message: text,
        };
        let shown = format!("{record:?}");
        assert!(shown.contains("\u{fffd}gone"), "{shown}");
    }
}
