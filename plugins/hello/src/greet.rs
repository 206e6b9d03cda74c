//! The greeting itself, without any plugin plumbing (benchmarks compile it in directly).

use std::fmt::Write;

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
