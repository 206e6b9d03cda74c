//! The files of a scaffolded plugin crate.

use host::HostIdentity;

use super::Kind;
use crate::preflight::{build_command, toml_opt_level};

/// What the files are made from.
pub(super) struct Values<'a> {
    pub(super) name: &'a str,
    pub(super) kind: Kind,
    pub(super) host: &'a HostIdentity,
    /// The fields of the `plugin-api` dependency table.
    pub(super) plugin_api: &'a str,
    /// `dev` or `release`.
    pub(super) cargo_profile: &'a str,
}

/// Every file, as (path relative to the crate, contents).
pub(super) fn files(v: &Values<'_>) -> Vec<(&'static str, String)> {
    let mut files = vec![
        ("Cargo.toml", manifest(v)),
        (
            "build.rs",
            "//! Records this plugin's provenance (compiler, profile, linked crates), which the host\n\
             //! reads from the library file and checks before loading it.\n\n\
             fn main() {\n    plugin_api::build::record();\n}\n"
                .to_owned(),
        ),
        ("src/lib.rs", lib_rs(v)),
        ("README.md", readme(v)),
        (".gitignore", "/target\n".to_owned()),
    ];
    if let Some(toolchain) = toolchain(v) {
        files.push(("rust-toolchain.toml", toolchain));
    }
    files
}

fn manifest(v: &Values<'_>) -> String {
    let p = &v.host.provenance.profile;
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

# The capabilities this plugin registers: the host indexes them to load the plugin only when
# one is first used, and refuses a registration not listed here (`undeclared-capability`).
[package.metadata.plugin-host]
capabilities = {{ {kind} = ["{name}"] }}

[lib]
# cdylib: the library the host loads; rlib: so `cargo test` tests it in-process.
crate-type = ["cdylib", "rlib"]

[dependencies]
plugin-api = {{ {api} }}

[build-dependencies]
# The provenance recorder that build.rs calls.
plugin-api = {{ {api}, default-features = false, features = ["build"] }}

# The settings {host} {version} was built with (its `{recorded}` profile), which it checks.
[profile.{profile}]
opt-level = {opt}
debug-assertions = {assertions}
panic = "{panic}"

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#,
        name = v.name,
        kind = match v.kind {
            Kind::Command => "command",
            Kind::Transform => "transform",
        },
        api = v.plugin_api,
        host = v.host.name,
        version = v.host.version,
        recorded = p.name,
        profile = v.cargo_profile,
        opt = toml_opt_level(&p.opt_level),
        assertions = p.debug_assertions,
        panic = p.panic,
    )
}

fn toolchain(v: &Values<'_>) -> Option<String> {
    let p = &v.host.provenance;
    let (channel, guessed) = host::toolchain_name(&p.rustc)?;
    let note = if guessed {
        format!(
            "\n# A nightly is named after the day after its commit date ({}): `rustc -vV` must\n# show commit-hash {}.",
            p.rustc.commit_date, p.rustc.commit_hash
        )
    } else {
        String::new()
    };
    Some(format!(
        "# The compiler {} {} was built with (rustc {}): the host checks it.{note}\n[toolchain]\nchannel = \"{channel}\"\ntargets = [\"{}\"]\n",
        v.host.name,
        v.host.version,
        p.rustc.short(),
        p.target
    ))
}

fn lib_rs(v: &Values<'_>) -> String {
    let name = v.name;
    let host = &v.host.name;
    match v.kind {
        Kind::Command => format!(
            r#"//! `{name}`: a plugin for {host}, registering the command `{name}`.

use plugin_api::{{export_plugin, Initializer, RegisterResult}};

/// What the `{name}` command answers.
fn respond(args: &[&str]) -> String {{
    match args {{
        [] => "hello from {name}".to_owned(),
        names => format!("hello, {{}}", names.join(" ")),
    }}
}}

fn register(init: &mut Initializer<'_>) -> RegisterResult {{
    init.add_command("{name}", |args: &[&str]| Ok(respond(args)))?;
    Ok(())
}}

export_plugin!(register);

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn greets_its_arguments() {{
        assert_eq!(respond(&[]), "hello from {name}");
        assert_eq!(respond(&["Ada", "Lovelace"]), "hello, Ada Lovelace");
    }}
}}
"#
        ),
        Kind::Transform => format!(
            r#"//! `{name}`: a plugin for {host}, registering the transform `{name}`.

use plugin_api::{{export_plugin, CallResult, Initializer, RVec, RegisterResult}};

/// The `{name}` transform: upper-cases ASCII letters. The host feeds it whole lines.
fn transform(input: &[u8], output: &mut RVec<u8>) -> CallResult<()> {{
    output.extend(input.iter().map(u8::to_ascii_uppercase));
    Ok(())
}}

fn register(init: &mut Initializer<'_>) -> RegisterResult {{
    init.add_transform("{name}", transform)?;
    Ok(())
}}

export_plugin!(register);

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn upper_cases() {{
        let mut out = RVec::new();
        transform(b"hello, world\n", &mut out).unwrap();
        assert_eq!(out.as_slice(), b"HELLO, WORLD\n");
    }}
}}
"#
        ),
    }
}

fn readme(v: &Values<'_>) -> String {
    let (name, host) = (v.name, &v.host.name);
    let profile_dir = &v.host.provenance.profile.name;
    let lib = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let try_it = match v.kind {
        Kind::Command => format!("{host} run --plugins target/{profile_dir} {name} Ada"),
        Kind::Transform => {
            format!("echo hello | {host} transform --plugins target/{profile_dir} {name}")
        }
    };
    format!(
        "# {name}\n\nA plugin for {host} {version}. Build it, check it, use it:\n\n```sh\n{build}\n\
         {host} check --policy strict target/{profile_dir}/{lib}\n{try_it}\n```\n\n\
         `rust-toolchain.toml` pins the host's compiler, `Cargo.lock` the host's versions of the\n\
         crates both link, and `[profile.{profile}]` in `Cargo.toml` the host's settings. After\n\
         changing dependencies, `{host} preflight` says whether a build would still be accepted\n\
         (without building) and `{host} preflight --fix` aligns the crate again.\n",
        version = v.host.version,
        build = build_command(v.cargo_profile),
        profile = v.cargo_profile,
    )
}
