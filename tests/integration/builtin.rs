//! Builtins: plugins compiled into the host register through the same `register` as plugin
//! files, show as `builtin`, and a plugin file of the same name replaces one only when asked.

use abi_stable::std_types::{RSlice, RStr};
use host::{ReasonCode, ScanMode, Status, BUILTIN_PATH};
use plugin_api::{CommandKind, Initializer, RegisterResult};

use crate::support::*;

/// The name of the CLI's own builtin: its crate's.
const CLI_BUILTIN: &str = "plugin-host";

#[test]
fn the_cli_builtin_is_listed_and_callable_without_plugins() {
    let empty = tempfile::tempdir().unwrap();
    let scan = scan_json(empty.path(), &[]);
    let builtin = entry(&scan, BUILTIN_PATH);
    assert_eq!(builtin["status"], "builtin", "{scan:#}");
    assert_eq!(builtin["name"], CLI_BUILTIN);
    assert_eq!(
        scan["plugins"][0]["status"], "builtin",
        "builtins come first"
    );
    assert!(builtin["capabilities"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"kind": "command", "name": "version"})));

    let dir = empty.path().to_str().unwrap();
    let out = cli(&["scan", dir]);
    assert!(
        stdout(&out).contains("builtin   plugin-host"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("1 builtin, 0 loaded"),
        "{}",
        stdout(&out)
    );

    let out = cli(&["run", "--plugins", dir, "version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("plugin-host "), "{}", stdout(&out));
    assert!(stdout(&out).contains("rustc "), "{}", stdout(&out));

    let out = cli_with(
        &["transform", "--plugins", dir, "echo"],
        &[],
        Some(b"a\nb\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a\nb\n");
}

#[test]
fn a_plugin_file_with_a_builtins_name_is_a_duplicate_unless_allowed() {
    let dir = plugin_dir(&[]);
    let file = copy_into(&dir, "hello", &file_name("hello"));
    rewrite_provenance(&file, |j| {
        j["name"] = CLI_BUILTIN.into();
        // Room for the longer name: facts no check compares.
        j["rustc"]["commit_date"] = "".into();
        j["rustc"]["llvm"] = "".into();
    });
    let path = dir.path().to_str().unwrap();

    let scan = scan_json(dir.path(), &[]);
    assert_eq!(entry(&scan, BUILTIN_PATH)["status"], "builtin");
    assert_outcome(
        entry(&scan, &file_name("hello")),
        "rejected",
        "duplicate-plugin",
        &["built into this host", "--replace-builtin plugin-host"],
    );
    assert!(!cli(&["run", "--plugins", path, "hello", "x"])
        .status
        .success());

    let scan = scan_json(dir.path(), &["--replace-builtin", CLI_BUILTIN]);
    let plugins = scan["plugins"].as_array().unwrap();
    assert!(plugins.iter().all(|p| p["status"] != "builtin"), "{scan:#}");
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
    let replaced = ["run", "--plugins", path, "--replace-builtin", CLI_BUILTIN];
    let out = cli(&[&replaced[..], &["hello", "Ada"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!cli(&[&replaced[..], &["version"]].concat())
        .status
        .success());
}

fn fails(init: &mut Initializer<'_>) -> RegisterResult {
    init.add_command("never", |_: &[&str]| Ok(String::new()))?;
    Err("no API token configured".into())
}

fn panics(_: &mut Initializer<'_>) -> RegisterResult {
    panic!("deliberate panic in a builtin's register")
}

fn greets(init: &mut Initializer<'_>) -> RegisterResult {
    let config = init.config().to_owned();
    init.add_command("greet", move |args: &[&str]| {
        Ok(format!("{config} {}", args.join(" ")))
    })?;
    Ok(())
}

#[test]
fn builtins_register_like_loaded_plugins() {
    let mut host = builder()
        .plugin("greeter", host::PluginSettings::new().config("hello"))
        .builtin(plugin_api::builtin_plugin!(
            fails,
            name = "failing",
            version = "1.0.0"
        ))
        .builtin(plugin_api::builtin_plugin!(
            panics,
            name = "panicking",
            version = "1.0.0"
        ))
        .builtin(plugin_api::builtin_plugin!(
            greets,
            name = "greeter",
            version = "0.2.0"
        ))
        .builtin(plugin_api::builtin_plugin!(
            greets,
            name = "greeter-2",
            version = "0.2.0"
        ))
        .build();
    let empty = tempfile::tempdir().unwrap();
    let reports = host.scan(&[empty.path()], ScanMode::Load).unwrap();
    assert_eq!(reports.len(), 4);
    let [failing, panicking, greeter, second] = &reports[..] else {
        unreachable!()
    };
    assert_eq!(failing.status, Status::Failed);
    assert_eq!(failing.reason, Some(ReasonCode::RegisterFailed));
    assert!(failing.message.as_deref().unwrap().contains("no API token"));
    assert_eq!(panicking.status, Status::Failed);
    assert_eq!(panicking.reason, Some(ReasonCode::RegisterPanicked));
    assert!(panicking
        .message
        .as_deref()
        .unwrap()
        .contains("deliberate panic in a builtin's register"));
    assert_eq!(greeter.status, Status::Builtin);
    assert_eq!(greeter.version.as_deref(), Some("0.2.0"));
    assert_eq!(second.reason, Some(ReasonCode::CapabilityConflict));

    // Nothing of the failed ones is registered; the builtin got its configuration.
    assert!(host.registry().get::<CommandKind>("never").is_err());
    let greet = host.registry().get::<CommandKind>("greet").unwrap();
    let out = greet
        .call(RSlice::from_slice(&[RStr::from("Ada")]))
        .into_result()
        .unwrap();
    assert_eq!(out.as_str(), "hello Ada");
    let loaded: Vec<_> = host.plugins().iter().map(|p| &*p.name).collect();
    assert_eq!(loaded, ["greeter"]);
    assert!(host.plugins()[0].builtin);
    assert_eq!(
        host.plugins()[0].provenance.rustc,
        host.identity().provenance.rustc
    );
}

#[test]
fn a_builtin_that_failed_to_register_keeps_its_name() {
    // A file named as the builtin that failed: still a duplicate, as it would be of one
    // that registered (only `replaces_builtin` gives a builtin's name to a file).
    let dir = plugin_dir(&[]);
    let file = copy_into(&dir, "hello", &file_name("hello"));
    rewrite_provenance(&file, |j| {
        j["name"] = "failing".into();
        // Room for the longer name: facts no check compares.
        j["rustc"]["commit_date"] = "".into();
    });
    let mut host = builder()
        .builtin(plugin_api::builtin_plugin!(
            fails,
            name = "failing",
            version = "1.0.0"
        ))
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let [builtin, file] = &reports[..] else {
        panic!("{reports:#?}")
    };
    assert_eq!(builtin.reason, Some(ReasonCode::RegisterFailed));
    assert_eq!(file.reason, Some(ReasonCode::DuplicatePlugin), "{file:#?}");
    assert!(host.plugins().is_empty());
}

#[test]
fn a_refused_file_does_not_replace_a_builtin() {
    // A file carrying the replaceable builtin's name, but one the host refuses (another
    // rustc, under a policy that cares): the builtin stays, where it was dropped for it and
    // its name then provided by nothing.
    let dir = plugin_dir(&[]);
    let file = copy_into(&dir, "hello", "libgreeter.so");
    rewrite_provenance(&file, |j| {
        j["name"] = "greeter".into();
        j["rustc"]["commit_date"] = "".into();
        j["rustc"]["commit_hash"] = "0".repeat(40).into();
    });
    let mut host = builder()
        .policy(host::Policy::preset("strict").unwrap())
        .plugin("greeter", host::PluginSettings::new().replaces_builtin())
        .builtin(plugin_api::builtin_plugin!(
            greets,
            name = "greeter",
            version = "0.2.0"
        ))
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let [builtin, refused] = &reports[..] else {
        panic!("{reports:#?}")
    };
    assert_eq!(builtin.status, Status::Builtin, "{builtin:#?}");
    assert_eq!(refused.status, Status::Rejected, "{refused:#?}");
    assert!(host.registry().get::<CommandKind>("greet").is_ok());
}

#[test]
fn a_replaceable_builtin_stays_when_no_file_replaces_it() {
    let dir = plugin_dir(&["hello"]);
    let mut host = builder()
        .plugin("greeter", host::PluginSettings::new().replaces_builtin())
        .builtin(plugin_api::builtin_plugin!(
            greets,
            name = "greeter",
            version = "0.2.0"
        ))
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(reports[0].status, Status::Builtin);
    assert_eq!(reports[1].status, Status::Loaded);
}
