//! The builder container image and builds through it.
//!
//! - [`context`]: the image's build context, derived from the host's provenance;
//! - [`image`]: the locally made base image and the builder image (cached by a label);
//! - [`plugin_build`]: a plugin built in the image with the network off (or on this machine
//!   with the pinned toolchain), checked under `--policy strict`, written atomically;
//! - [`engine`]: podman or docker, found and probed;
//! - [`error`]: what can go wrong, each with its fix.

pub mod context;
pub mod engine;
pub mod error;
mod files;
pub mod glibc;
pub mod image;
pub mod plugin_build;
pub mod toolchain;

pub use context::{host_lockfile, image_tag, write_context, Context, ContextOptions, DEFAULT_BASE};
pub use engine::{Engine, EngineChoice};
pub use error::ContainerError;
pub use files::sha256_file;
pub use image::{make_base, make_image, BaseOptions, Made};
pub use plugin_build::{build_plugin, output_name, BuildRequest, Built};
