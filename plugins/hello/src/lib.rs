//! `hello`: the smallest useful plugin — one command that greets.
//!
//! ```text
//! $ plugin-host run --plugins target/debug hello Ada
//! hello, Ada! (from plugin-host 0.1.0)
//! ```

use plugin_api::{export_plugin, CallResult, Initializer, RegisterResult};

/// Builds the greeting; exposed so it can be unit-tested without a host.
pub fn greet(args: &[&str], host: &str) -> CallResult<String> {
    let who = if args.is_empty() {
        "world".to_owned()
    } else {
        args.join(" ")
    };
    Ok(format!("hello, {who}! (from {host})"))
}

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    let host = format!("{} {}", init.host_name(), init.host_version());
    log::info!("registering `hello` for {host}");
    init.add_command("hello", move |args: &[&str]| {
        log::debug!("hello called with {} argument(s)", args.len());
        greet(args, &host)
    })?;
    Ok(())
}

export_plugin!(register);

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
