//! [`StringAppender`]: appends to a host's [`RString`] as fast as to a `String`.

use std::fmt;

use abi_stable::std_types::{RString, RVec};

/// Appends text to an [`RString`] with the appends inlined into the caller's code, as a
/// `String`'s are: for a command that writes its output piece by piece
/// ([`crate::Command::run_into`]).
///
/// `RString::push_str` (and `fmt::Write` on an `RString`) is a function call into
/// `abi_stable` per append, with a `memcpy` call of a length unknown at compile time; over a
/// few short pieces that costs several times the writing itself (BENCHMARKS.md, issue 18
/// §5). An appender appends with `RVec::extend_from_copy_slice`, the very code `push_str`
/// runs, but generic, so it is compiled and inlined into the caller:
///
/// ```
/// use std::fmt::Write;
/// use plugin_api::{RString, StringAppender};
///
/// let mut out = RString::from("> ");
/// {
///     let mut w = StringAppender::new(&mut out);
///     w.push_str("hello, ");
///     write!(w, "{}!", "Ada").unwrap();
/// }
/// assert_eq!(out, "> hello, Ada!");
/// ```
///
/// The buffer grows, when it must, through the allocator of whoever made it (the host), as
/// `RString` always does. The appender writes into the string where it lies (nothing is
/// moved in or out), so a panic mid-write leaves the string with the whole pieces appended
/// before it.
pub struct StringAppender<'a> {
    /// The string's bytes: valid UTF-8 at all times, since only whole `str`s are appended.
    bytes: &'a mut RVec<u8>,
}

// `RString` is `#[repr(C)] struct RString { inner: RVec<u8> }` (abi_stable 0.11; its
// `StableAbi` layout says so, and the test below checks it): a pointer to an `RString` is a
// pointer to its `RVec<u8>`. That layout is part of abi_stable's stable ABI, which libraries
// built against different 0.11 releases share: a release cannot change it without breaking
// them all, and a host would refuse such a plugin's layouts.
const _: () = assert!(
    std::mem::size_of::<RString>() == std::mem::size_of::<RVec<u8>>()
        && std::mem::align_of::<RString>() == std::mem::align_of::<RVec<u8>>()
);

impl<'a> StringAppender<'a> {
    /// An appender to the end of `out`.
    #[inline]
    pub fn new(out: &'a mut RString) -> Self {
        // SAFETY: `RString` is a `repr(C)` struct whose only field is its `RVec<u8>` (see the
        // assertion above and `the_string_is_its_bytes`), so the cast points to that field,
        // with the string's exclusive borrow. The string's invariant, UTF-8, is kept: only
        // whole `str`s are appended through it.
        let bytes = unsafe { &mut *(out as *mut RString).cast::<RVec<u8>>() };
        StringAppender { bytes }
    }

    /// Appends `s`.
    #[inline]
    pub fn push_str(&mut self, s: &str) {
        self.bytes.extend_from_copy_slice(s.as_bytes());
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // SAFETY: an `RString`'s bytes with whole `str`s appended: valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(self.bytes) }
    }
}

impl fmt::Write for StringAppender<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl fmt::Debug for StringAppender<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StringAppender")
            .field(&self.as_str())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn appends_grow_and_the_string_comes_back() {
        let mut out = RString::with_capacity(4);
        out.push_str("ab");
        {
            let mut w = StringAppender::new(&mut out);
            for i in 0..1000 {
                write!(w, "{i},").unwrap();
            }
            w.push_str("é");
            assert!(w.as_str().starts_with("ab0,1,2,"));
        }
        let expected: String =
            "ab".to_owned() + &(0..1000).map(|i| format!("{i},")).collect::<String>() + "é";
        assert_eq!(out, expected.as_str());
        out.push_str(" and on");
        assert!(out.ends_with("é and on"));
    }

    #[test]
    fn a_panic_mid_write_leaves_what_was_appended() {
        let mut out = RString::from("kept ");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = StringAppender::new(&mut out);
            w.push_str("part");
            panic!("mid-write");
        }));
        assert!(caught.is_err());
        assert_eq!(out, "kept part");
    }

    /// What `new`'s cast relies on: `RString`'s one field is an `RVec<u8>` (at offset 0, as
    /// the first field of a `repr(C)` struct).
    #[test]
    fn the_string_is_its_bytes() {
        use abi_stable::StableAbi;
        let fields = <RString as StableAbi>::LAYOUT.get_fields().unwrap();
        let fields: Vec<_> = fields.iter().collect();
        assert_eq!(fields.len(), 1);
        let (field, rvec) = (fields[0].layout(), <RVec<u8> as StableAbi>::LAYOUT);
        assert_eq!(field.full_type().to_string(), rvec.full_type().to_string());
        assert_eq!(
            (field.size(), field.alignment()),
            (rvec.size(), rvec.alignment())
        );
    }
}
