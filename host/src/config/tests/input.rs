//! Every bad input of the configuration: malformed files, unknown keys, wrong types, bad
//! workers, untrusted and oversized files.

use super::*;

// ---- bad input -------------------------------------------------------------------------

#[test]
fn malformed_toml_names_file_line_column() {
    let w = World::new();
    let p = w.write(project(), "[policy]\npreset = \"strict\n");
    // Where the closing quote is missing: the end of line 2.
    assert_at(&err(&w), &p, 2, 17, &["malformed TOML"]);
}

#[test]
fn unknown_keys_suggest_the_closest_known_one() {
    let w = World::new();
    let p = w.write(project(), "[policy]\npresett = \"strict\"\n");
    assert_at(
        &err(&w),
        &p,
        2,
        1,
        &[
            "unknown key `presett` in [policy]",
            "did you mean `preset`?",
        ],
    );

    w.write(project(), "[serach]\npaths = []\n");
    assert_at(&err(&w), &p, 1, 2, &["did you mean `search`?"]);

    w.write(project(), "[plugins.redact]\nreplace_builtin = true\n");
    assert_at(
        &err(&w),
        &p,
        2,
        1,
        &["[plugins.redact]", "did you mean `replace-builtin`?"],
    );

    w.write(project(), "[policy.checks]\nrustcc = \"warn\"\n");
    assert_at(&err(&w), &p, 2, 1, &["did you mean `rustc`?"]);

    // Nothing close: no suggestion.
    w.write(project(), "zzz = 1\n");
    let e = err(&w);
    assert_at(&e, &p, 1, 1, &["unknown key `zzz` in the top level"]);
    assert!(!e.contains("did you mean"), "{e}");
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    let w = World::new();
    let p = w.write(project(), "[policy]\npreset = 3\n");
    assert_at(
        &err(&w),
        &p,
        2,
        10,
        &["`policy.preset`: expected a string, found an integer"],
    );

    w.write(project(), "[plugins.redact]\nenabled = \"yes\"\n");
    assert_at(
        &err(&w),
        &p,
        2,
        11,
        &["`plugins.redact.enabled`: expected a boolean, found a string"],
    );

    w.write(project(), "search = [1]\n");
    assert_at(&err(&w), &p, 1, 10, &["expected a table, found an array"]);

    w.write(project(), "[search]\npaths = [\".\", 2]\n");
    assert_at(
        &err(&w),
        &p,
        2,
        15,
        &["expected a string, found an integer"],
    );

    w.write(project(), "[plugins.redact]\nconfig = \"a=1\"\n");
    assert_at(&err(&w), &p, 2, 10, &["expected a table, found a string"]);
}

#[test]
fn bad_enum_values_list_the_allowed_ones() {
    let w = World::new();
    let p = w.write(project(), "[policy]\npreset = \"lax\"\n");
    assert_at(
        &err(&w),
        &p,
        2,
        10,
        &["unknown value `lax`", "default, strict"],
    );

    w.write(project(), "[trust]\nsignatures = \"always\"\n");
    assert_at(&err(&w), &p, 2, 14, &["ignore, warn, require"]);

    w.write(project(), "[policy.checks]\nrustc = \"error\"\n");
    assert_at(&err(&w), &p, 2, 9, &["ignore, warn, fail"]);

    w.write(project(), "[plugins.a]\nisolation = \"thread\"\n");
    assert_at(&err(&w), &p, 2, 13, &["in-process, process"]);
}

#[test]
fn soundness_checks_cannot_be_configured() {
    let w = World::new();
    let p = w.write(project(), "[plugins.a]\nchecks = { target = \"warn\" }\n");
    assert_at(&err(&w), &p, 2, 12, &["`target` check guards soundness"]);
}

#[test]
fn missing_paths_are_errors() {
    let w = World::new();
    let p = w.write(project(), "[search]\npaths = [\"nope\"]\n");
    let e = err(&w);
    assert_at(&e, &p, 2, 10, &["`search.paths`"]);
    assert!(
        e.ends_with(&format!("{} does not exist", w.path("proj/nope").display())),
        "{e}"
    );

    w.write(project(), "[plugins.a]\npath = \"liba.so\"\n");
    assert_at(&err(&w), &p, 2, 8, &["liba.so does not exist"]);
}

#[test]
fn bad_names_and_keys_are_refused() {
    let w = World::new();
    let p = w.write(project(), "[plugins.\"bad name\"]\nenabled = true\n");
    assert_at(&err(&w), &p, 1, 10, &["cargo package name"]);

    w.write(project(), "[trust]\nkeys = [\"not-a-key\"]\n");
    assert_at(&err(&w), &p, 2, 9, &["not a minisign public key"]);
}

#[test]
fn an_unreadable_layer_is_an_error() {
    let w = World::new();
    // A directory where the user file should be.
    w.mkdir(user());
    let e = err(&w);
    assert!(e.starts_with(&w.path(user()).display().to_string()), "{e}");
    assert!(e.contains("configuration file"), "{e}");
    assert!(e.contains("a directory, not a regular file"), "{e}");
}

#[test]
fn a_broken_layer_applies_nothing() {
    let w = World::new();
    w.write(user(), "[policy]\npreset = \"strict\"\n");
    // The first keys of the broken file are fine; the error is further down.
    let p = w.write(
        project(),
        "[trust]\nsignatures = \"require\"\n[policy]\npreset = \"nope\"\n",
    );
    let e = w.load().unwrap_err();
    assert_eq!(e.origin().unwrap().file, p);
    assert_eq!(e.origin().unwrap().line, 4);
    // A lower broken layer is reported even when a higher one is fine.
    w.write(project(), "[policy]\npreset = \"default\"\n");
    w.write(user(), "[policy\n");
    let e = w.load().unwrap_err();
    assert_eq!(e.origin().unwrap().file, w.path(user()));
}

// ---- [isolation] workers -----------------------------------------------------------------

#[test]
fn workers_resolve_against_their_file_and_a_project_names_none() {
    let w = World::new();
    w.write("home/.config/plugin-host/workers/w-nightly", "");
    w.write("proj/tools/w-beta", "");
    w.write("proj/tools/w-nightly", "");
    let u = w.write(user(), "[isolation]\nworkers = [\"workers/w-nightly\"]\n");
    let c = w.load().unwrap();
    let workers = c.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(
        workers[0].value,
        w.path("home/.config/plugin-host/workers/w-nightly")
    );
    assert_eq!(
        (
            &workers[0].origin.file,
            workers[0].origin.line,
            workers[0].origin.column
        ),
        (&u, 2, 12)
    );

    // The project's array is not applied: a worker runs as trusted code, unchecked, so a
    // project cannot name one (a notice says so).
    w.write(
        project(),
        "[isolation]\nworkers = [\n  \"tools/w-beta\",\n  \"tools/w-nightly\",\n]\n",
    );
    let c = w.load().unwrap();
    let paths: Vec<_> = c.workers().iter().map(|v| v.value.clone()).collect();
    assert_eq!(
        paths,
        vec![w.path("home/.config/plugin-host/workers/w-nightly")]
    );
    assert!(
        c.notices()[0].contains("`[isolation] workers` is not applied"),
        "{:?}",
        c.notices()
    );
    // The explicit file (the user's choice) names workers, resolved against its directory.
    let explicit = Locations {
        explicit: Some(w.path("proj/plugin-host.toml")),
        ..w.locations()
    };
    let c = Config::load(&explicit).unwrap();
    let paths: Vec<_> = c.workers().iter().map(|v| v.value.clone()).collect();
    assert_eq!(
        paths,
        vec![w.path("proj/tools/w-beta"), w.path("proj/tools/w-nightly")]
    );
    let entries = c.entries();
    let second = entries
        .iter()
        .find(|e| e.key == "isolation.workers[1]")
        .unwrap_or_else(|| panic!("no isolation.workers[1] in {entries:#?}"));
    let origin = second.origin.as_ref().unwrap();
    assert_eq!(origin.line, 4);

    // No [isolation] table anywhere: no workers, no entry.
    w.write(project(), "");
    fs::remove_file(w.path(user())).unwrap();
    let c = w.load().unwrap();
    assert!(c.workers().is_empty());
    assert!(!c.entries().iter().any(|e| e.key.starts_with("isolation")));
}

#[test]
fn a_worker_that_does_not_exist_or_is_a_directory_is_an_error_at_its_place() {
    let w = World::new();
    w.write("proj/w-ok", "");
    let p = w.write(
        project(),
        "[isolation]\nworkers = [\"w-ok\", \"w-missing\"]\n",
    );
    let e = err(&w);
    assert_at(&e, &p, 2, 20, &["`isolation.workers`"]);
    assert!(
        e.ends_with(&format!(
            "{} does not exist",
            w.path("proj/w-missing").display()
        )),
        "{e}"
    );

    w.mkdir("proj/wdir");
    w.write(project(), "[isolation]\nworkers = [\"wdir\"]\n");
    assert_at(
        &err(&w),
        &p,
        2,
        12,
        &["is a directory, not a worker binary"],
    );

    w.write(project(), "[isolation]\nworkers = [\"\"]\n");
    assert_at(&err(&w), &p, 2, 12, &["an empty path"]);
}

#[test]
fn workers_of_the_wrong_type_or_under_a_misspelt_key_are_refused() {
    let w = World::new();
    let p = w.write(project(), "[isolation]\nworkers = \"w\"\n");
    assert_at(
        &err(&w),
        &p,
        2,
        11,
        &["`isolation.workers`: expected an array, found a string"],
    );

    w.write(project(), "[isolation]\nworkers = [\"w\", 3]\n");
    assert_at(
        &err(&w),
        &p,
        2,
        17,
        &["`isolation.workers`: expected a string, found an integer"],
    );

    w.write(project(), "isolation = [\"w\"]\n");
    assert_at(&err(&w), &p, 1, 13, &["expected a table, found an array"]);

    w.write(project(), "[isolation]\nworker = [\"w\"]\n");
    assert_at(
        &err(&w),
        &p,
        2,
        1,
        &[
            "unknown key `worker` in [isolation]",
            "did you mean `workers`?",
        ],
    );

    w.write(project(), "[isolaton]\nworkers = []\n");
    assert_at(&err(&w), &p, 1, 2, &["did you mean `isolation`?"]);
}

#[test]
fn a_project_file_no_configuration_could_be_is_ignored_not_an_error() {
    let w = World::new();
    let locations = w.recorded_locations();
    w.write("proj/plugin-host.toml", "[policy]\npreset = \"strict\"\n");
    let file = w.path("proj/plugin-host.toml");
    for (bytes, says) in [
        (b"[policy]\npreset = \"\xff\"\n".to_vec(), "not UTF-8"),
        (vec![b'#'; (1 << 20) + 1], "larger than"),
    ] {
        std::fs::write(&file, &bytes).unwrap();
        let config = Config::load(&locations).unwrap();
        assert_eq!(config.policy_preset(), None);
        let ignored = &config.ignored()[0];
        assert!(
            matches!(&ignored.why, Untrusted::Unusable { detail } if detail.contains(says)),
            "{:?}",
            ignored.why
        );
        assert!(ignored.message("plugin-host").contains("is ignored"));
    }
}

#[test]
fn trust_is_recorded_in_the_data_home_and_a_project_file_is_used_once_trusted() {
    let w = World::new();
    let locations = w.recorded_locations();
    assert_eq!(
        locations.project_trust,
        ProjectTrust::Recorded(w.path("home/.local/share/plugin-host/trusted-projects"))
    );
    let project = w.write("proj/plugin-host.toml", "[policy]\npreset = \"strict\"\n");
    let config = Config::load(&locations).unwrap();
    assert_eq!(config.policy_preset(), None);
    assert_eq!(config.project_dir(), None);
    assert_eq!(config.ignored().len(), 1);
    assert_eq!(config.ignored()[0].why, Untrusted::NotTrusted);
    let message = config.ignored()[0].message("plugin-host");
    assert!(
        message.contains(&format!(
            "run `plugin-host config trust {}`",
            project.display()
        )),
        "{message}"
    );

    assert_eq!(
        trust_project(&locations, &project).unwrap(),
        project.canonicalize().unwrap()
    );
    let config = Config::load(&locations).unwrap();
    assert!(config.ignored().is_empty());
    assert_eq!(config.policy_preset().unwrap().value, "strict");
    assert_eq!(config.project_dir(), Some(w.path("proj").as_path()));

    // A changed file is another file: ignored until trusted again.
    w.write("proj/plugin-host.toml", "[policy]\npreset = \"default\"\n");
    let config = Config::load(&locations).unwrap();
    assert_eq!(config.ignored()[0].why, Untrusted::Changed);
    assert_eq!(config.policy_preset(), None);

    // A project file that links to a trusted one is another file, of another directory.
    trust_project(&locations, &project).unwrap();
    w.mkdir("other/sub");
    std::os::unix::fs::symlink(&project, w.path("other/plugin-host.toml")).unwrap();
    let elsewhere = Locations {
        cwd: w.path("other/sub"),
        ..locations.clone()
    };
    let config = Config::load(&elsewhere).unwrap();
    assert_eq!(config.ignored()[0].why, Untrusted::NotTrusted);
    assert_eq!(config.project_dir(), None);

    assert!(untrust_project(&locations, &project).unwrap());
    assert!(!untrust_project(&locations, &project).unwrap());
    // Without a data directory, nothing can be trusted.
    let homeless = Locations {
        project_trust: ProjectTrust::Never,
        ..locations.clone()
    };
    assert_eq!(
        Config::load(&homeless).unwrap().ignored()[0].why,
        Untrusted::NoRecord
    );
    assert!(matches!(
        trust_project(&homeless, &project),
        Err(ConfigError::Untrusted { .. })
    ));
}

#[test]
fn a_broken_file_cannot_be_trusted_and_a_broken_record_is_an_error() {
    let w = World::new();
    let locations = w.recorded_locations();
    let project = w.write("proj/plugin-host.toml", "[policy]\npresett = \"strict\"\n");
    let err = trust_project(&locations, &project).unwrap_err();
    assert!(err.to_string().contains("did you mean `preset`"), "{err}");
    let record = w.write(
        "home/.local/share/plugin-host/trusted-projects",
        "sha256:zz /x\n",
    );
    let err = Config::load(&locations).unwrap_err().to_string();
    assert!(err.contains(&record.display().to_string()), "{err}");
    assert!(err.contains("line 1"), "{err}");
    // Not a regular file: refused, not read.
    fs::remove_file(&record).unwrap();
    fs::create_dir(&record).unwrap();
    let err = Config::load(&locations).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

// ---- size and file type ------------------------------------------------------------------

/// A user file of `keys` keys in one plugin's `config` table, padded with a comment to exactly
/// `len` bytes.
fn big_config(keys: usize, len: usize) -> String {
    let mut text = String::from("[plugins.big.config]\n");
    for i in 0..keys {
        text.push_str(&format!("key{i} = {i}\n"));
    }
    assert!(text.len() < len, "{} keys do not fit in {len} bytes", keys);
    text.push('#');
    text.push_str(&"x".repeat(len - text.len()));
    text
}

#[test]
fn a_one_mebibyte_file_of_many_keys_is_read_and_every_key_placed() {
    // 60 000 keys in 1 MiB: with a scan from the start of the file for every key (as before)
    // this took minutes; each origin is now a lookup in line starts computed once.
    let w = World::new();
    let keys = 60_000;
    let p = w.write(user(), &big_config(keys, MAX_CONFIG_LEN as usize));
    assert_eq!(fs::metadata(&p).unwrap().len(), MAX_CONFIG_LEN);
    let config = w.load().unwrap();
    let leaves = config.plugin("big").unwrap().config.leaves();
    assert_eq!(leaves.len(), keys);
    let last = leaves
        .iter()
        .find(|l| l.key == format!("key{}", keys - 1))
        .unwrap();
    // `key59999 = 59999`: the value is at column 12.
    assert_eq!((last.origin.line, last.origin.column), (keys + 1, 12));

    // All on one line (an inline table): columns are lookups too.
    let mut line = String::from("[plugins.big]\nconfig = { ");
    for i in 0..20_000 {
        line.push_str(&format!("k{i} = \"\u{e9}\", "));
    }
    line.push_str("end = 1 }\n");
    w.write(user(), &line);
    let config = w.load().unwrap();
    let leaves = config.plugin("big").unwrap().config.leaves();
    let end = leaves.iter().find(|l| l.key == "end").unwrap();
    let byte = line.lines().nth(1).unwrap().find("end = 1").unwrap() + "end = ".len();
    // Each `é` is 2 bytes and 1 column.
    assert_eq!((end.origin.line, end.origin.column), (2, byte - 20_000 + 1));
}

#[test]
fn a_file_over_the_limit_is_refused_naming_it_and_the_limit() {
    let w = World::new();
    let p = w.write(user(), &big_config(10, MAX_CONFIG_LEN as usize + 1));
    let e = err(&w);
    assert!(e.contains(&p.display().to_string()), "{e}");
    assert!(e.contains("larger than 1048576 bytes"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_fifo_or_a_device_named_as_configuration_is_refused_at_once() {
    let w = World::new();
    let fifo = w.path("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let zero = w.path("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for (file, kind) in [(&fifo, "a FIFO"), (&zero, "a device")] {
        let locations = w.locations_with(&[("PLUGIN_HOST_CONFIG", file.to_str().unwrap())]);
        let e = Config::load(&locations).unwrap_err().to_string();
        assert!(e.contains(&format!("is {kind}, not a regular file")), "{e}");
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("$PLUGIN_HOST_CONFIG"), "{e}");
    }
}

#[test]
fn a_project_file_whose_owner_cannot_be_checked_is_not_used() {
    // Fail closed: a file (or directory) gone between being found and being checked — a swap
    // in progress — is not taken for one of the user's own.
    let w = World::new();
    let gone = w.path("gone/plugin-host.toml");
    match super::trusted::path_refusal(&gone) {
        Some(Untrusted::Unchecked { path, detail }) => {
            assert_eq!(path, gone);
            assert!(detail.contains("No such file"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let mine = w.write("proj/plugin-host.toml", "");
    assert_eq!(super::trusted::path_refusal(&mine), None);
}
