//! Records the application's own build provenance: every plugin is judged against it.

fn main() {
    plugin_api::build::record();
}
