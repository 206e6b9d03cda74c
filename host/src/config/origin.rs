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
    pub fn at(file: &Path, text: &str, offset: usize) -> Origin {
        let offset = offset.min(text.len());
        // A span may end inside a multi-byte character only if the parser said so; stay on
        // a boundary anyway.
        let offset = (0..=offset)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Origin {
            file: file.to_owned(),
            line,
            column,
        }
    }

    /// The origin of the start of `span`, or `fallback` when there is no span (the parser
    /// gives none for implicit tables).
    pub(crate) fn of(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        fallback: &Origin,
    ) -> Origin {
        match span {
            Some(span) => Origin::at(file, text, span.start),
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
}
