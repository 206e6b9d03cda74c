//! The greeting and the command that runs it, without the plugin's export: the call
//! benchmarks compile this file in, so that their baseline is the very code the plugin runs.

use std::fmt::Write;

use plugin_api::{CallResult, Command, RString, StringAppender};

/// Builds the greeting.
pub fn greet(
    args: &[&str],
    host: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let words: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut out = String::with_capacity(16 + words.max(5) + host.len());
    greet_into(args, host, &mut out)?;
    Ok(out)
}

/// Appends the greeting to `out`, piece by piece: nothing is allocated when `out` has room.
pub fn greet_into<W: Write>(args: &[&str], host: &str, out: &mut W) -> std::fmt::Result {
    out.write_str("hello, ")?;
    match args.split_first() {
        None => out.write_str("world")?,
        Some((first, rest)) => {
            out.write_str(first)?;
            for arg in rest {
                out.write_str(" ")?;
                out.write_str(arg)?;
            }
        }
    }
    out.write_str("! (from ")?;
    out.write_str(host)?;
    out.write_str(")")
}

// ANCHOR: greeter
/// Both call forms: `call` returns a new string, `call_into` writes into the caller's buffer
/// (a host that reuses it pays no allocation per call), through a `StringAppender`, whose
/// appends are inlined as a `String`'s are.
pub struct Greeter {
    host: String,
}

impl Greeter {
    /// A greeter that names `host` (the host's name and version).
    pub fn new(host: String) -> Self {
        Greeter { host }
    }
}

impl Command for Greeter {
    fn run(&self, args: &[&str]) -> CallResult<String> {
        log::debug!("hello called with {} argument(s)", args.len());
        greet(args, &self.host)
    }

    fn run_into(&self, args: &[&str], out: &mut RString) -> CallResult<()> {
        log::debug!("hello called with {} argument(s)", args.len());
        Ok(greet_into(args, &self.host, &mut StringAppender::new(out))?)
    }
}
// ANCHOR_END: greeter

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        assert_eq!(
            super::greet(&[], "h 1").unwrap(),
            "hello, world! (from h 1)"
        );
        assert_eq!(
            super::greet(&["Ada", "L."], "h 1").unwrap(),
            "hello, Ada L.! (from h 1)"
        );
        let mut out = String::from("> ");
        super::greet_into(&["Ada"], "h 1", &mut out).unwrap();
        assert_eq!(out, "> hello, Ada! (from h 1)", "appended");
    }
}
