//! Where a value came from: a file, a line and a column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The place in a configuration file a value (or an error) was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Origin {
    /// The file, as it was found (absolute when the locations were).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Origin {
    /// The origin of byte `offset` of `text`, the contents of `file`.
    ///
    /// This scans all of `text`; the configuration reader instead indexes a file's
    /// lines once and places each of its keys by binary search.
    pub fn at(file: &Path, text: &str, offset: usize) -> Origin {
        Lines::new(text).origin(file, offset)
    }
}

/// Where the lines of a text start and where its multi-byte characters are, found in one pass:
/// the [`Origin`] of any offset is then a binary search, not a scan from the start (placing
/// every key of a file stays linear in its size).
#[derive(Debug, Clone)]
pub(crate) struct Lines<'t> {
    text: &'t str,
    /// The byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
    /// The byte offset of each UTF-8 continuation byte: a column counts characters, so these
    /// bytes do not count.
    continuations: Vec<usize>,
}

impl<'t> Lines<'t> {
    /// Indexes `text`.
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        let mut continuations = Vec::new();
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            } else if b & 0xC0 == 0x80 {
                continuations.push(i);
            }
        }
        Lines {
            text,
            starts,
            continuations,
        }
    }

    /// The origin of byte `offset` of the text, the contents of `file`.
    pub(crate) fn origin(&self, file: &Path, offset: usize) -> Origin {
        let mut offset = offset.min(self.text.len());
        // A span may end inside a multi-byte character only if the parser said so; stay on
        // a boundary anyway (at most 3 bytes back).
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let before = |at: usize| self.continuations.partition_point(|&c| c < at);
        let column = offset - start - (before(offset) - before(start)) + 1;
        Origin {
            file: file.to_owned(),
            line,
            column,
        }
    }

    /// The origin of the start of `span`, or `fallback` when there is no span (the parser
    /// gives none for implicit tables).
    pub(crate) fn of(&self, file: &Path, span: Option<Range<usize>>, fallback: &Origin) -> Origin {
        match span {
            Some(span) => self.origin(file, span.start),
            None => fallback.clone(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A configured value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Valued<T> {
    /// The value (paths already resolved against the directory of the file that set them).
    pub value: T,
    /// Where it was set.
    pub origin: Origin,
}

impl<T> Valued<T> {
    /// `value`, set at `origin`.
    pub fn new(value: T, origin: Origin) -> Self {
        Valued { value, origin }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let text = "a = 1\n\u{e9}t\u{e9} = 2\n";
        let at = |o| Origin::at(Path::new("f.toml"), text, o);
        assert_eq!((at(0).line, at(0).column), (1, 1));
        assert_eq!((at(4).line, at(4).column), (1, 5));
        // `=` on line 2 follows two 2-byte characters and one 1-byte one.
        let eq = text.find(" = 2").unwrap() + 1;
        assert_eq!((at(eq).line, at(eq).column), (2, 5));
        assert_eq!(at(eq).to_string(), "f.toml:2:5");
    }

    #[test]
    fn lines_place_every_offset_as_a_scan_from_the_start_would() {
        let text = "a = 1\n\u{e9}t\u{e9} = \"\u{1f600}\"\n\n[b]\r\nc = 2";
        let lines = Lines::new(text);
        for offset in 0..=text.len() + 2 {
            let clamped = (0..=offset.min(text.len()))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap();
            let before = &text[..clamped];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            let got = lines.origin(Path::new("f"), offset);
            assert_eq!((got.line, got.column), (line, column), "offset {offset}");
        }
    }
}
