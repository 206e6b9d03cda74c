//! Text that came from a plugin file or from plugin code, made safe to show and to store.
//!
//! Nothing a plugin says is trusted to be well-formed: a provenance record, a file name, a
//! capability name or a log message may carry control characters that would drive the
//! user's terminal (set its title, move the cursor, hide or forge lines), or bytes that are
//! not UTF-8 at all. Strings crossing from a plugin are converted with [`lossy`] at the
//! boundary; everything printed for a human goes through [`printable`]. JSON output keeps
//! the exact text (JSON escapes control characters itself).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as itself: C0 and C1 control characters (including
/// newline, carriage return and escape), DEL, and the Unicode format characters that reorder
/// or hide text (bidirectional marks, overrides and isolates, zero-width characters, line and
/// paragraph separators, the byte-order mark, tag characters).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// `text` with every [unsafe character](is_unsafe_char) escaped as Rust writes it (`\n`,
/// `\u{1b}`), so a hostile string shows up as what it is, on one line. Borrowed when there
/// was nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    // Printable ASCII (nearly every name and path) holds nothing to escape: told a byte at a
    // time, which the compiler does many at once, before any character is decoded.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) || !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text`, cut to at most `max` characters (the last one an ellipsis) when it is longer.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    // No more bytes than `max`: no more characters either.
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text[end..].chars().nth(1).is_some() => {
            Cow::Owned(format!("{}…", &text[..end]))
        }
        _ => Cow::Borrowed(text),
    }
}

/// `text` as a terminal shows it: [`bounded`] to `max` characters first (escaping makes it
/// longer), then [`printable`].
pub fn shown(text: &str, max: usize) -> String {
    printable(&bounded(text, max)).into_owned()
}

/// Bytes a plugin handed over as a string, as UTF-8: invalid sequences become U+FFFD.
/// `abi_stable`'s `RStr`/`RString` promise UTF-8 but nothing on the other side of the
/// boundary enforces it, so the host never uses their `&str` view of plugin data unchecked.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// `n` in decimal, written at the end of `digits`: what `n.to_string()` writes, without the
/// formatter (which costs more than the judging that some of these texts report).
pub(crate) fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    std::str::from_utf8(&digits[at..]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_drives_a_terminal() {
        assert!(matches!(printable("hello 0.1.0 ü"), Cow::Borrowed(_)));
        assert_eq!(
            printable("x\u{1b}]0;pwned\u{7}\nverified hello\r\u{202e}"),
            "x\\u{1b}]0;pwned\\u{7}\\nverified hello\\r\\u{202e}"
        );
        assert_eq!(printable("\u{9b}31m\u{7f}"), "\\u{9b}31m\\u{7f}");
        // Every byte below 0x80 (the ASCII fast path's edges), alone and in a longer text.
        for b in 0..0x80u8 {
            let c = char::from(b);
            let escaped = !(0x20..0x7f).contains(&b);
            assert_eq!(is_unsafe_char(c), escaped, "{b:#04x}");
            let text = format!("plugin-{c}-name/with/a/path");
            assert_eq!(
                matches!(printable(&text), Cow::Owned(_)),
                escaped,
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn bounds_by_characters() {
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcd", 3), "ab…");
        assert_eq!(bounded("ééééé", 4), "ééé…");
        assert_eq!(bounded("", 0), "");
        // Under `max` characters but over `max` bytes: kept whole.
        assert_eq!(bounded("ééé", 3), "ééé");
        assert_eq!(bounded("éééé", 3), "éé…");
    }

    #[test]
    fn lossy_replaces_invalid_utf8() {
        assert_eq!(lossy(b"ok \xff\xfe end"), "ok \u{fffd}\u{fffd} end");
    }

    #[test]
    fn decimal_writes_what_to_string_writes() {
        for n in [0, 1, 9, 10, 99, 100, 4_294_967_296, u64::MAX - 1, u64::MAX]
            .into_iter()
            .chain((0..64).map(|shift| 1u64 << shift))
            .chain((0..20).map(|p| 10u64.pow(p) - 1))
        {
            assert_eq!(super::decimal(n, &mut [0; 20]), n.to_string());
        }
    }
}
