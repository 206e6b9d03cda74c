//! `greeter-plugin`: a plugin for `greeter-app` providing the greeter `polite`.

use greeter_kind::GreeterKind;
use plugin_api::{export_plugin, CallResult, Initializer, RegisterResult};

/// The `polite` greeting.
pub fn polite(who: &str) -> CallResult<String> {
    if who.is_empty() {
        return Err("whom should I greet?".into());
    }
    Ok(format!("Good day, {who}."))
}

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    log::info!("greeting for {} {}", init.host_name(), init.host_version());
    init.add::<GreeterKind>("polite", GreeterKind::object(polite))?;
    Ok(())
}

export_plugin!(register);

#[cfg(test)]
mod tests {
    #[test]
    fn greets_politely() {
        assert_eq!(super::polite("Ada").unwrap(), "Good day, Ada.");
        assert!(super::polite("").is_err());
    }
}
