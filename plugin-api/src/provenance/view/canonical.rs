//! The fast path of [`ProvenanceRef::decode`]: a record exactly as the recorder writes it
//! ([`Provenance::encode`]: serde_json's compact form, the fields in their order, no
//! whitespace), every string in printable ASCII (`0x20..=0x7e`: no escape, no control
//! character, nothing beyond ASCII), read by hand in one pass. A record this path reads
//! holds only printable ASCII, so whoever bounds its fields need not look at their
//! characters again ([`ProvenanceRef::decode_telling_printable`]).
//!
//! Anything else — an escape, a character beyond ASCII, whitespace, another field order, an
//! unknown field, a value of another type, anything serde_json would refuse — makes [`parse`]
//! give up (`None`), and serde_json decodes the record instead: what this path accepts it
//! reads exactly as serde_json does, and every error is serde_json's.
//!
//! [`Provenance::encode`]: super::Provenance::encode

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::super::{plain_version, spaces_in, spec_ends};
use super::{DependencyRef, ProfileRef, ProvenanceRef, RustcRef, Text};

/// The record in `json`, when it is in the recorder's exact form (see the [module](self)).
/// The bytes need not be checked as UTF-8 first: every byte this path accepts is ASCII.
pub(super) fn parse(json: &[u8]) -> Option<ProvenanceRef<'_>> {
    let mut c = Cursor { json, at: 0 };
    c.lit(b"{\"name\":")?;
    let name = c.text()?;
    c.lit(b",\"version\":")?;
    let version = c.version()?;
    c.lit(b",\"plugin_api\":")?;
    let plugin_api = c.version()?;
    c.lit(b",\"abi_stable\":")?;
    let abi_stable = c.version()?;
    c.lit(b",\"rustc\":{\"release\":")?;
    let release = c.text()?;
    c.lit(b",\"commit_hash\":")?;
    let commit_hash = c.text()?;
    c.lit(b",\"commit_date\":")?;
    let commit_date = c.text()?;
    c.lit(b",\"channel\":")?;
    let channel = c.text()?;
    c.lit(b",\"llvm\":")?;
    let llvm = if c.lit(b"null").is_some() {
        None
    } else {
        Some(c.text()?)
    };
    c.lit(b"},\"target\":")?;
    let target = c.text()?;
    c.lit(b",\"profile\":{\"name\":")?;
    let profile_name = c.text()?;
    c.lit(b",\"opt_level\":")?;
    let opt_level = c.text()?;
    c.lit(b",\"debug_assertions\":")?;
    let debug_assertions = if c.lit(b"true").is_some() {
        true
    } else {
        c.lit(b"false")?;
        false
    };
    c.lit(b",\"panic\":")?;
    let panic = c.text()?;
    c.lit(b"},\"features\":")?;
    let features = c.list(0, |c| c.text())?;
    c.lit(b",\"dependencies\":")?;
    // Room for the crates of a small plugin at once (`hello` links 26).
    let dependencies = c.list(32, Cursor::dependency)?;
    let mut digests = BTreeMap::new();
    if c.lit(b",\"digests\":").is_some() {
        c.map(|c, key| {
            // The last of equal keys stands, as serde_json's map.
            digests.insert(key, c.text()?);
            Some(())
        })?;
    }
    let mut capabilities = None;
    if c.lit(b",\"capabilities\":").is_some() {
        let mut declared = BTreeMap::new();
        c.map(|c, kind| {
            declared.insert(kind, c.list(0, |c| c.text())?);
            Some(())
        })?;
        capabilities = Some(declared);
    }
    c.lit(b"}")?;
    if c.at != json.len() {
        return None;
    }
    Some(ProvenanceRef {
        name,
        version,
        plugin_api,
        abi_stable,
        rustc: RustcRef {
            release,
            commit_hash,
            commit_date,
            channel,
            llvm,
        },
        target,
        profile: ProfileRef {
            name: profile_name,
            opt_level,
            debug_assertions,
            panic,
        },
        features,
        dependencies,
        digests,
        capabilities,
    })
}

struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Exactly `bytes` next.
    fn lit(&mut self, bytes: &[u8]) -> Option<()> {
        let rest = self.json.get(self.at..)?;
        rest.starts_with(bytes).then(|| self.at += bytes.len())
    }

    /// A string of printable ASCII (so without escapes, and without control characters,
    /// which JSON requires escaped), borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.quoted(|bytes| (plain_len(bytes), ()))
            .map(|(text, ())| text)
    }

    /// A dependency: a string as [`Cursor::string`] reads it that [`DependencyRef::parse`]
    /// accepts, its spaces found in the same pass over its bytes.
    fn dependency(&mut self) -> Option<DependencyRef<'a>> {
        let (spec, [first, second]) = self.quoted(plain_len_and_spaces)?;
        let (name_end, version_end) = spec_ends(spec.as_bytes(), first, second)?;
        Some(DependencyRef {
            spec: Text(Cow::Borrowed(spec)),
            name_end,
            version_end,
        })
    }

    /// A string whose plain part `scan` measures ([`plain_len`], with what else it found on
    /// the way), borrowed.
    fn quoted<T>(&mut self, scan: impl FnOnce(&[u8]) -> (usize, T)) -> Option<(&'a str, T)> {
        self.lit(b"\"")?;
        let start = self.at;
        let (len, found) = scan(&self.json[start..]);
        let end = start + len;
        // Stopped at the closing quote, not at a backslash, a control character or the end.
        if self.json.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        let plain = &self.json[start..end];
        debug_assert!(plain.iter().all(|b| (0x20..0x7f).contains(b)));
        // SAFETY: `scan` is `plain_len` or counts as it does: only bytes of 0x20..=0x7e,
        // ASCII, so UTF-8.
        Some((unsafe { std::str::from_utf8_unchecked(plain) }, found))
    }

    fn text(&mut self) -> Option<Text<'a>> {
        self.string().map(|s| Text(Cow::Borrowed(s)))
    }

    /// A version, parsed as `semver`'s serde support parses it: a plain
    /// `major.minor.patch` (nearly every version a record holds) read here, anything else
    /// by `semver`.
    fn version(&mut self) -> Option<semver::Version> {
        let text = self.string()?;
        match plain_version(text.as_bytes()) {
            Some([major, minor, patch]) => Some(semver::Version::new(major, minor, patch)),
            None => semver::Version::parse(text).ok(),
        }
    }

    /// `[]` or `[item,item,...]`, with room for `capacity` items made at the first.
    fn list<T>(
        &mut self,
        capacity: usize,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        self.lit(b"[")?;
        let mut items = Vec::new();
        if self.lit(b"]").is_some() {
            return Some(items);
        }
        items.reserve(capacity);
        loop {
            items.push(item(self)?);
            if self.lit(b"]").is_some() {
                return Some(items);
            }
            self.lit(b",")?;
        }
    }

    /// `{}` or `{"key":value,...}`, each value read by `entry`.
    fn map(&mut self, mut entry: impl FnMut(&mut Self, Text<'a>) -> Option<()>) -> Option<()> {
        self.lit(b"{")?;
        if self.lit(b"}").is_some() {
            return Some(());
        }
        loop {
            let key = self.text()?;
            self.lit(b":")?;
            entry(self, key)?;
            if self.lit(b"}").is_some() {
                return Some(());
            }
            self.lit(b",")?;
        }
    }
}

/// How many bytes from the start of `bytes` are printable ASCII other than `"` and `\`
/// (`0x20..=0x7e`): eight bytes at a time.
fn plain_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        let stops = stops_in(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| stops(b))
        .unwrap_or(bytes.len() - at)
}

/// The bytes of the word `x` (little-endian whatever the machine: the first byte is the
/// lowest) where a string's plain part ends, as high bits: the lowest is exact, those above
/// it may not be.
fn stops_in(x: u64) -> u64 {
    // A byte's high bit is set in `quote`, `backslash` or `del` when it is that byte (every
    // bit of `x ^ ..` is then zero), and in `below` when it is under 0x20, but only for
    // bytes under 0x80 (`& !x`); and in `x` itself for bytes of 0x80 and above. A borrow
    // may also flag bytes above one that stops, never below it: the lowest flag is the
    // first byte that stops.
    let quote = (x ^ (ONES * b'"' as u64)).wrapping_sub(ONES);
    let backslash = (x ^ (ONES * b'\\' as u64)).wrapping_sub(ONES);
    let del = (x ^ (ONES * 0x7f)).wrapping_sub(ONES);
    let below = x.wrapping_sub(ONES * 0x20);
    ((quote | backslash | del | below) & !x | x) & HIGH
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// [`plain_len`], and where the first two spaces are in the bytes it counts.
fn plain_len_and_spaces(bytes: &[u8]) -> (usize, [Option<usize>; 2]) {
    let mut spaces = [None; 2];
    let mut found = 0;
    // Notes the spaces flagged (a high bit each, as `spaces_in` gives them) in the word at
    // `at`.
    let mut note = |mut flags: u64, at: usize| {
        while flags != 0 && found < 2 {
            spaces[found] = Some(at + (flags.trailing_zeros() / 8) as usize);
            found += 1;
            flags &= flags - 1;
        }
    };
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let stops = stops_in(x);
        let space = spaces_in(x);
        if stops != 0 {
            let len = (stops.trailing_zeros() / 8) as usize;
            // Only the spaces before the first byte that stops.
            note(space & ((1u64 << (len * 8)) - 1), at);
            return (at + len, spaces);
        }
        note(space, at);
        at += 8;
    }
    for (i, &b) in bytes[at..].iter().enumerate() {
        if stops(b) {
            return (at + i, spaces);
        }
        if b == b' ' {
            note(0x80, at + i);
        }
    }
    (bytes.len(), spaces)
}

/// Whether a string's plain part ends at `byte`.
fn stops(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::super::super::first_two_spaces;
    use super::super::super::plain_version;
    use super::{plain_len, plain_len_and_spaces, stops};

    #[test]
    fn a_plain_version_is_read_as_semver_reads_it() {
        let texts = [
            "0.0.0",
            "0.11.3",
            "1.95.0",
            "10.200.3000",
            "18446744073709551615.18446744073709551615.18446744073709551615",
            "18446744073709551616.0.0",
            "01.0.0",
            "0.01.0",
            "0.0.00",
            "1.0",
            "1.0.0.0",
            "1..0",
            ".1.0",
            "1.0.",
            "1.0.0-rc.1",
            "1.0.0+b7",
            "1.0.0 ",
            " 1.0.0",
            "1.0.x",
            "",
            "v1.0.0",
        ];
        for text in texts {
            let semver = semver::Version::parse(text).ok();
            let plain = semver
                .as_ref()
                .filter(|v| v.pre.is_empty() && v.build.is_empty());
            assert_eq!(
                plain_version(text.as_bytes()),
                plain.map(|v| [v.major, v.minor, v.patch]),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_spaces_found_with_the_length_are_the_first_two_before_it() {
        for len in 0..20 {
            for first in 0..len {
                for second in first..len {
                    for third in [None, Some(len - 1)] {
                        // Where it stops: nowhere, or at any byte, as any byte that stops.
                        for stop in [None].into_iter().chain((0..len).map(Some)) {
                            for stop_byte in [b'"', b'\\', 0x1f, 0x7f, 0x80, 0xff] {
                                let mut text = vec![b'a'; len];
                                text[first] = b' ';
                                text[second] = b' ';
                                if let Some(third) = third {
                                    text[third] = b' ';
                                }
                                if let Some(stop) = stop {
                                    text[stop] = stop_byte;
                                }
                                let plain = plain_len(&text);
                                let (len_told, spaces) = plain_len_and_spaces(&text);
                                assert_eq!(len_told, plain, "{text:?}");
                                let (a, b) = first_two_spaces(&text[..plain]);
                                assert_eq!(spaces, [a, b], "{text:?}");
                                if stop.is_none() {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn plain_len_stops_at_the_first_byte_not_printable_ascii_or_a_quote_or_backslash() {
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    let stops = byte == b'"' || byte == b'\\' || !(0x20..=0x7e).contains(&byte);
                    assert_eq!(
                        plain_len(&text),
                        if stops { at } else { len },
                        "{byte:#04x} at {at} of {len}"
                    );
                }
            }
        }
        assert_eq!(plain_len("é\"".as_bytes()), 0);
        assert_eq!(plain_len("abcdefghé\"".as_bytes()), 8);
        // The first of several that stop, whichever they are.
        for (text, first) in [
            (&b"ab\x01\"\\xxxxxxxxxx"[..], 2),
            (b"abcdefg\\\x00\"", 7),
            (b"abcdefgh\x1f\x1f\"", 8),
            (b"\"\"\"\"\"\"\"\"\"", 0),
            (b"\x7f\x80\xff\x20~~~~\x7f\\", 0),
            (b" ~~~~~~~~\x7f\x80", 9),
            (b"~~~~~~~~~~~\x80", 11),
        ] {
            assert_eq!(plain_len(text), first, "{text:?}");
        }
        assert_eq!(plain_len(b"\xff\xff\xff\xff\xff\xff\xff\xff\"x"), 0);
        assert_eq!(plain_len(b"~~~~~~~~\xff\xff\"x"), 8);
        // The tail (under eight bytes) stops where the words do.
        for byte in 0..=255u8 {
            assert_eq!(plain_len(&[b'a', byte]), if stops(byte) { 1 } else { 2 });
        }
    }
}
