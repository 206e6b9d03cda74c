//! Records this plugin's build provenance for `plugin_api::export_plugin!`.
fn main() {
    plugin_api::build::record();
}
