//! End-to-end tests: every fixture plugin is built from source by `fixtures`, then judged,
//! loaded and called through the `plugin-host` binary or the `host` library.

mod fixtures;
mod immutable;
mod support;
mod worst_case;

mod book;
mod builder;
mod builder_image;
mod builtin;
mod calls;
mod config;
mod configured;
mod docs;
mod embedding;
mod exit_status;
mod hostile;
mod isolate;
mod lazy;
mod loading;
mod malformed;
mod project_trust;
mod provenance;
mod readme;
mod registration;
mod registry;
mod skew;
mod skew_worker;
mod structure;
mod traces;
mod trust;
mod untrusted;
