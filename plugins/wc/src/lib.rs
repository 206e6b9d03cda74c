//! `wc`: counts lines, words and bytes of files, like `wc(1)`, as a plugin command.
//!
//! ```text
//! $ plugin-host run --plugins target/debug wc README.md Cargo.toml
//!      120     870    6021 README.md
//!       60     150    1500 Cargo.toml
//!      180    1020    7521 total
//! ```
//!
//! It shows a command that does real I/O and reports errors a user can act on.

use std::fmt::Write as _;
use std::io::Read;

use plugin_api::{export_plugin, CallResult, Initializer, RegisterResult};

/// Line, word and byte counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Newlines.
    pub lines: u64,
    /// Whitespace-separated words.
    pub words: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Counts a stream in fixed-size blocks (memory does not grow with the input).
pub fn count(mut input: impl Read) -> std::io::Result<Counts> {
    let mut counts = Counts::default();
    let mut in_word = false;
    let mut block = [0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut block) {
            Ok(0) => return Ok(counts),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        counts.bytes += n as u64;
        for &b in &block[..n] {
            if b == b'\n' {
                counts.lines += 1;
            }
            let space = b.is_ascii_whitespace();
            if !space && !in_word {
                counts.words += 1;
            }
            in_word = !space;
        }
    }
}

/// The command: counts each file and, for several, the total.
pub fn wc(paths: &[&str]) -> CallResult<String> {
    if paths.is_empty() {
        return Err("usage: wc FILE... (give at least one file)".into());
    }
    let mut out = String::new();
    let mut total = Counts::default();
    for path in paths {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
        let c =
            count(std::io::BufReader::new(file)).map_err(|e| format!("cannot read {path}: {e}"))?;
        log::debug!("{path}: {c:?}");
        let _ = writeln!(out, "{:>8}{:>8}{:>8} {path}", c.lines, c.words, c.bytes);
        total.lines += c.lines;
        total.words += c.words;
        total.bytes += c.bytes;
    }
    if paths.len() > 1 {
        let _ = writeln!(
            out,
            "{:>8}{:>8}{:>8} total",
            total.lines, total.words, total.bytes
        );
    }
    out.pop();
    Ok(out)
}

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    log::info!(
        "wc registered (plugin-api {} on the host side)",
        init.api_version()
    );
    init.add_command("wc", wc)?;
    Ok(())
}

export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_wc() {
        let c = count(&b"one two\n  three\n\nfour"[..]).unwrap();
        assert_eq!(
            c,
            Counts {
                lines: 3,
                words: 4,
                bytes: 21
            }
        );
    }

    #[test]
    fn reports_missing_files() {
        let err = wc(&["/definitely/not/here"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot open /definitely/not/here"),
            "{err}"
        );
        assert!(wc(&[]).unwrap_err().to_string().contains("usage"));
    }
}
