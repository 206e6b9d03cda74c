//! Who the host is: the identity every plugin is judged against.

use plugin_api::provenance::{DecodeError, Provenance};

/// Who the host is: the application's name and version, and its own build provenance, which
/// every plugin is judged against.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    /// Application name, told to plugins.
    pub name: String,
    /// Application version, told to plugins.
    pub version: String,
    /// The host's own provenance (from its `build.rs`, via `plugin_api::provenance_blob!()`).
    pub provenance: Provenance,
}

impl HostIdentity {
    /// Builds the identity from the application's embedded provenance blob:
    ///
    /// ```ignore
    /// let me = HostIdentity::from_blob(plugin_api::provenance_blob!())?;
    /// ```
    pub fn from_blob(blob: &[u8]) -> Result<Self, DecodeError> {
        let provenance = Provenance::decode(blob)?;
        Ok(HostIdentity {
            name: provenance.name.clone(),
            version: provenance.version.to_string(),
            provenance,
        })
    }
}
