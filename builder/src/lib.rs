//! The plugin builder: a build the host accepts is the easy path.
//!
//! Everything here is derived from a host's own provenance ([`host::HostIdentity`]): the
//! scaffold of a new plugin crate, the preflight check of a plugin crate against the host
//! before anything is compiled (with a fix), and the builder container image pinned to the
//! host's toolchain and shared crates. It is a crate of its own because what it needs —
//! editing Cargo manifests and locks, running cargo and a container engine — has no place in
//! the dependency tree of every application that embeds `host`.

pub mod cargo;
pub mod container;
pub mod copy;
pub mod lockfile;
pub mod preflight;
pub mod scaffold;
