//! The greeting itself, without any plugin plumbing (benchmarks compile it in directly).

/// Builds the greeting.
pub fn greet(
    args: &[&str],
    host: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let who = if args.is_empty() {
        "world".to_owned()
    } else {
        args.join(" ")
    };
    Ok(format!("hello, {who}! (from {host})"))
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
    }
}
