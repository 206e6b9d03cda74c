//! Records the host's own build provenance, with the same recorder plugins use: plugins are
//! judged against it.

fn main() {
    plugin_api::build::record();
}
