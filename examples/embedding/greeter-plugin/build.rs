//! Records the plugin's build provenance: the host judges it before loading the plugin.

fn main() {
    plugin_api::build::record();
}
