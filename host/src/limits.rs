//! Bounds on what a plugin file or plugin code may declare: names, versions and capability
//! lists are shown to users and stored by the host, so none may be unbounded or unprintable.

use plugin_api::provenance::ProvenanceRef;

use crate::text::is_unsafe_char;

/// The longest plugin (package) name accepted; crates.io allows 64.
pub const MAX_PLUGIN_NAME: usize = 64;
/// The longest value of any other single provenance field (versions, rustc facts, target,
/// profile, a feature, one dependency).
pub const MAX_FIELD: usize = 512;
/// The longest a version within these bounds is when written out: at most [`MAX_FIELD`] bytes
/// of pre-release and build, three numbers of at most 20 digits, two dots, `-` and `+`.
pub const MAX_VERSION_TEXT: usize = MAX_FIELD + 3 * 20 + 4;
/// The most features or dependencies a provenance record may list.
pub const MAX_LIST: usize = 10_000;
/// The longest capability name accepted, in bytes.
pub const MAX_CAPABILITY_NAME: usize = 128;
/// The most characters of one text plugin code hands an in-process host at run time that the
/// host keeps or logs (a log record's message or target, a registration's error message): the
/// rest is cut, before any escaping makes it longer. A worker's are cut the same.
pub const MAX_PLUGIN_TEXT: usize = 64 * 1024;
/// The most capabilities one plugin may register.
pub const MAX_CAPABILITIES: usize = 4096;

/// Checks a decoded provenance record against the bounds above; `Err` says what is wrong.
/// `printable` says every string of the record is already known to be printable ASCII
/// ([`ProvenanceRef::decode_telling_printable`]): then only lengths and counts are checked.
pub(crate) fn check_provenance(p: &ProvenanceRef<'_>, printable: bool) -> Result<(), String> {
    check_name(&p.name)?;
    let fields = [
        ("target", p.target.as_str()),
        ("rustc release", &p.rustc.release),
        ("rustc commit-hash", &p.rustc.commit_hash),
        ("rustc commit-date", &p.rustc.commit_date),
        ("rustc channel", &p.rustc.channel),
        ("rustc LLVM version", p.rustc.llvm.as_deref().unwrap_or("")),
        ("profile name", &p.profile.name),
        ("opt-level", &p.profile.opt_level),
        ("panic strategy", &p.profile.panic),
    ];
    // The versions parsed as semver: bounded by their parts, which are plain text (a
    // refusal that names the interface crates quotes theirs whole).
    for (what, version) in [
        ("version", &p.version),
        ("plugin_api version", &p.plugin_api),
        ("abi_stable version", &p.abi_stable),
    ] {
        if version.pre.len() + version.build.len() > MAX_FIELD {
            return Err(format!(
                "its {what} is {} bytes long, more than {MAX_FIELD}",
                version.to_string().len()
            ));
        }
    }
    for (what, value) in fields {
        check_field(what, value, printable)?;
    }
    for (what, len) in [
        ("features", p.features.len()),
        ("dependencies", p.dependencies.len()),
    ] {
        if len > MAX_LIST {
            return Err(format!("it lists {len} {what}, more than {MAX_LIST}"));
        }
    }
    for f in &p.features {
        check_field("feature", f, printable)?;
    }
    for d in &p.dependencies {
        check_field("dependency", d.as_str(), printable)?;
    }
    // Digests are shown in messages when contents differ: bounded as every other field.
    if p.digests.len() > MAX_LIST {
        return Err(format!(
            "it lists {} digests, more than {MAX_LIST}",
            p.digests.len()
        ));
    }
    for (key, digest) in &p.digests {
        check_field("digest key", key, printable)?;
        check_field("digest", digest, printable)?;
    }
    if let Some(declared) = &p.capabilities {
        check_declared_as(declared)?;
    }
    Ok(())
}

/// The declared capabilities: at most [`MAX_CAPABILITIES`] in all (and as many kinds), each
/// kind and name as a registered one must be (the index cache checks its own bytes alike).
#[cfg(test)]
fn check_declared(
    declared: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    check_declared_as(declared)
}

/// [`check_declared`], for owned and borrowed texts alike.
fn check_declared_as<K: AsRef<str>, N: AsRef<str>>(
    declared: &std::collections::BTreeMap<K, Vec<N>>,
) -> Result<(), String> {
    let count = declared.values().map(Vec::len).sum::<usize>() + declared.len();
    if count > MAX_CAPABILITIES {
        return Err(format!(
            "it declares {} capabilities of {} kinds, more than {MAX_CAPABILITIES} in all",
            count - declared.len(),
            declared.len()
        ));
    }
    for (kind, names) in declared {
        let kind = kind.as_ref().as_bytes();
        if !is_plain_capability_name(kind) {
            capability_name(kind).map_err(|e| {
                format!(
                    "it declares a capability kind that is {}",
                    e.trim_start_matches("a capability ")
                )
            })?;
        }
        for name in names {
            let name = name.as_ref().as_bytes();
            if !is_plain_capability_name(name) {
                capability_name(name).map_err(|e| format!("it declares {e}"))?;
            }
        }
    }
    Ok(())
}

/// The bytes of a plugin name: ASCII letters and digits, `-` and `_` (one lookup a byte: a
/// warm start checks 10 000 names from its cache).
const PLUGIN_NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// Whether `bytes` are a plugin name as [`check_name`] wants it.
#[inline]
pub(crate) fn is_plugin_name(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_PLUGIN_NAME
        && bytes.iter().all(|&b| PLUGIN_NAME_BYTE[usize::from(b)])
}

/// Whether `bytes` are a capability name as [`capability_name`] wants it (printable ASCII,
/// nearly every name, is told without decoding characters).
pub(crate) fn is_capability_name(bytes: &[u8]) -> bool {
    is_plain_capability_name(bytes) || capability_name(bytes).is_ok()
}

/// A capability name of printable ASCII without spaces: one [`capability_name`] accepts,
/// told without decoding characters.
fn is_plain_capability_name(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_CAPABILITY_NAME && ascii_from::<0x21>(bytes)
}

/// A plugin name: a Cargo package name of at most [`MAX_PLUGIN_NAME`] bytes.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if !is_plugin_name(name.as_bytes()) {
        return Err(format!(
            "the plugin name {} is not a Cargo package name (1 to {MAX_PLUGIN_NAME} ASCII \
             letters, digits, `-` or `_`)",
            describe(name)
        ));
    }
    Ok(())
}

fn check_field(what: &str, value: &str, printable: bool) -> Result<(), String> {
    if value.len() > MAX_FIELD {
        return Err(format!(
            "its {what} is {} bytes long, more than {MAX_FIELD}",
            value.len()
        ));
    }
    // Printable ASCII (nearly every value) is told eight bytes at a time, or was already.
    if !printable && !printable_ascii(value.as_bytes()) && value.chars().any(is_unsafe_char) {
        return Err(format!(
            "its {what} {} contains control characters",
            describe(value)
        ));
    }
    Ok(())
}

/// Whether every byte is printable ASCII (`0x20..=0x7e`).
fn printable_ascii(bytes: &[u8]) -> bool {
    ascii_from::<0x20>(bytes)
}

/// Whether every byte is in `LOW..=0x7e` (`LOW` at most 0x7f), eight bytes at a time. The
/// last word overlaps the one before it rather than leaving a tail to check a byte at a time,
/// and four to seven bytes are two overlapping halves of one word: a byte checked twice is
/// still checked.
fn ascii_from<const LOW: u8>(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte's high bit is set in `below` when it is under `LOW`, in `del` when it is 0x7f
    // (every byte of `x ^ 0x7f..` is then zero), and in `x` when it is 0x80 or more; the
    // borrows of bytes already flagged may flag the next ones, which changes nothing.
    let in_range = |x: u64| {
        let below = x.wrapping_sub(ONES * u64::from(LOW));
        let del = (x ^ (ONES * 0x7f)).wrapping_sub(ONES);
        (below | del | x) & HIGH == 0
    };
    if let Some(last) = bytes.last_chunk::<8>() {
        let whole = bytes.chunks_exact(8);
        whole
            .map(|w| u64::from_ne_bytes(w.try_into().expect("eight bytes")))
            .chain([u64::from_ne_bytes(*last)])
            .all(in_range)
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        let half = |h: &[u8; 4]| u64::from(u32::from_ne_bytes(*h));
        in_range(half(first) | half(last) << 32)
    } else {
        bytes.iter().all(|b| (LOW..0x7f).contains(b))
    }
}

/// A capability name as the plugin sent it, checked: UTF-8, 1 to [`MAX_CAPABILITY_NAME`]
/// bytes, no control, format or whitespace characters.
pub fn capability_name(bytes: &[u8]) -> Result<&str, String> {
    let Ok(name) = std::str::from_utf8(bytes) else {
        return Err(format!(
            "a capability name that is not UTF-8 ({:?})",
            crate::text::lossy(&bytes[..bytes.len().min(MAX_CAPABILITY_NAME)])
        ));
    };
    if name.is_empty() {
        return Err("a capability with an empty name".into());
    }
    if name.len() > MAX_CAPABILITY_NAME {
        return Err(format!(
            "a capability name of {} bytes (at most {MAX_CAPABILITY_NAME}): {}",
            name.len(),
            describe(name)
        ));
    }
    if name.chars().any(|c| is_unsafe_char(c) || c.is_whitespace()) {
        return Err(format!(
            "a capability name with control or whitespace characters: {}",
            describe(name)
        ));
    }
    Ok(name)
}

/// A short, printable rendering of a hostile value for a message.
fn describe(value: &str) -> String {
    format!("\"{}\"", crate::text::shown(value, 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_and_names_are_told_for_every_byte_at_every_position() {
        for len in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 23] {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    let what = format!("{byte:#04x} at {at} of {len}");
                    let printable = (0x20..0x7f).contains(&byte);
                    assert_eq!(printable_ascii(&text), printable, "{what}");
                    let plain = printable && byte != b' ';
                    assert_eq!(is_plain_capability_name(&text), plain, "{what}");
                    let plugin = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
                    assert_eq!(is_plugin_name(&text), plugin, "{what}");
                }
            }
        }
        // Neighbours at the edges of the range, where a borrow could leak into the next byte.
        assert!(printable_ascii(b" ~ ~ ~ ~ ~ ~ ~ ~"));
        assert!(!printable_ascii(b" \x7f~~~~~~~\x1f"));
        assert!(is_plain_capability_name(b"!~!~!~!~!~!~!~!~"));
        assert!(!is_plain_capability_name(b"!~!~!~! ~!~!~!~!"));
        // Lengths.
        assert!(!is_plain_capability_name(b""));
        assert!(is_plain_capability_name(&[b'!'; MAX_CAPABILITY_NAME]));
        assert!(!is_plain_capability_name(&[b'!'; MAX_CAPABILITY_NAME + 1]));
        assert!(is_plugin_name(&[b'z'; MAX_PLUGIN_NAME]));
        assert!(!is_plugin_name(&[b'z'; MAX_PLUGIN_NAME + 1]));
        assert!(!is_plugin_name(b""));
    }

    #[test]
    fn capability_names() {
        assert_eq!(capability_name(b"hello-world_2"), Ok("hello-world_2"));
        for bad in [
            &b""[..],
            b"a b",
            b"x\x1b[2J",
            b"\xff\xfe",
            &[b'a'; MAX_CAPABILITY_NAME + 1],
        ] {
            let err = capability_name(bad).unwrap_err();
            assert!(err.starts_with("a capability"), "{err}");
            assert!(!err.contains('\x1b'), "{err}");
        }
        assert!(capability_name(&[b'a'; MAX_CAPABILITY_NAME]).is_ok());
    }

    #[test]
    fn declared_capabilities_are_bounded() {
        use std::collections::BTreeMap;
        let one = |kind: &str, names: Vec<String>| BTreeMap::from([(kind.to_owned(), names)]);
        assert!(check_declared(&one("command", vec!["hello".into()])).is_ok());
        assert!(check_declared(&BTreeMap::new()).is_ok());
        let many = (0..MAX_CAPABILITIES).map(|i| format!("c{i}")).collect();
        let err = check_declared(&one("command", many)).unwrap_err();
        assert!(err.contains("more than 4096"), "{err}");
        let err = check_declared(&one("command", vec!["n".repeat(200)])).unwrap_err();
        assert!(
            err.starts_with("it declares a capability name of 200 bytes"),
            "{err}"
        );
        let err = check_declared(&one("x\u{1b}[2J", vec![])).unwrap_err();
        assert!(err.contains("kind") && !err.contains('\x1b'), "{err}");
        let err = check_declared(&one("", vec![])).unwrap_err();
        assert!(err.contains("kind"), "{err}");
    }
}
