//! Every layer rule and every bad input, on files in temporary directories (never the real
//! `~` or `/etc`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;
use crate::policy::{CheckKind, Severity};
use crate::trust::SignatureMode;

const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

/// A temporary world: `etc/` (system config dirs), `home/` (user), `proj/sub/` (the cwd).
struct World {
    root: TempDir,
}

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proj/sub")).unwrap();
        World { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The locations for app `app` as the environment `vars` (relative values are under the
    /// world) would give them, the cwd being `proj/sub`.
    fn locations_with(&self, vars: &[(&str, &str)]) -> Locations {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| {
                let value = std::env::split_paths(v)
                    .map(|p| {
                        if p.is_absolute() {
                            p
                        } else {
                            self.path(p.to_str().unwrap())
                        }
                    })
                    .collect::<Vec<_>>();
                (k.to_string(), std::env::join_paths(value).unwrap())
            })
            .collect();
        Locations::from_vars("plugin-host", self.path("proj/sub"), |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    /// [`World::locations`], the project file used without a record of trust: what the
    /// layering tests are about (trust has tests of its own).
    fn locations(&self) -> Locations {
        Locations {
            project_trust: ProjectTrust::Implicit,
            ..self.recorded_locations()
        }
    }

    /// System dirs `etc1:etc2`, home `home`, data dirs under the world; a project file is
    /// used once trusted, as the CLI has it.
    fn recorded_locations(&self) -> Locations {
        self.locations_with(&[
            ("HOME", "home"),
            ("XDG_CONFIG_DIRS", "etc1:etc2"),
            ("XDG_DATA_DIRS", "share1:share2"),
        ])
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.locations())
    }
}

fn system1() -> &'static str {
    "etc1/plugin-host/config.toml"
}
fn system2() -> &'static str {
    "etc2/plugin-host/config.toml"
}
fn user() -> &'static str {
    "home/.config/plugin-host/config.toml"
}
fn project() -> &'static str {
    "proj/plugin-host.toml"
}

fn err(w: &World) -> String {
    w.load()
        .expect_err("the configuration must be refused")
        .to_string()
}

/// Asserts `message` starts with `file:line:column: ` and contains each of `needles`.
fn assert_at(message: &str, file: &Path, line: usize, column: usize, needles: &[&str]) {
    let at = format!("{}:{line}:{column}: ", file.display());
    assert!(message.starts_with(&at), "expected `{at}…`, got: {message}");
    for n in needles {
        assert!(message.contains(n), "lacks {n:?}: {message}");
    }
}

// ---- locations -------------------------------------------------------------------------

#[test]
fn env_var_is_named_after_the_app() {
    assert_eq!(Locations::env_var("plugin-host"), "PLUGIN_HOST_CONFIG");
    assert_eq!(Locations::env_var("my-app"), "MY_APP_CONFIG");
}

#[test]
fn xdg_defaults_and_overrides() {
    let w = World::new();
    let l = w.locations_with(&[("HOME", "home")]);
    assert_eq!(l.user, Some(w.path(user())));
    assert_eq!(
        l.system,
        vec![PathBuf::from("/etc/xdg/plugin-host/config.toml")]
    );
    assert_eq!(
        l.data,
        vec![
            w.path("home/.local/share/plugin-host/plugins"),
            PathBuf::from("/usr/local/share/plugin-host/plugins"),
            PathBuf::from("/usr/share/plugin-host/plugins"),
        ]
    );
    assert_eq!(l.explicit, None);
    assert_eq!(l.cache, Some(w.path("home/.cache/plugin-host")));

    let l = w.locations_with(&[
        ("HOME", "home"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_CONFIG_HOME", "cfg"),
        ("XDG_CONFIG_DIRS", "a:b"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_DATA_DIRS", "d1"),
        ("PLUGIN_HOST_CONFIG", "x.toml"),
    ]);
    assert_eq!(l.user, Some(w.path("cfg/plugin-host/config.toml")));
    assert_eq!(l.cache, Some(w.path("cache/plugin-host")));
    // Lowest priority first: the last XDG_CONFIG_DIRS entry.
    assert_eq!(
        l.system,
        vec![
            w.path("b/plugin-host/config.toml"),
            w.path("a/plugin-host/config.toml")
        ]
    );
    assert_eq!(
        l.data,
        vec![
            w.path("data/plugin-host/plugins"),
            w.path("d1/plugin-host/plugins")
        ]
    );
    assert_eq!(l.explicit, Some(w.path("x.toml")));

    // A relative explicit file is relative to the working directory.
    let l = Locations::from_vars("plugin-host", w.path("proj"), |name| {
        (name == "PLUGIN_HOST_CONFIG").then(|| OsString::from("conf/mine.toml"))
    });
    assert_eq!(l.explicit, Some(w.path("proj/conf/mine.toml")));

    // No HOME: no user file; relative XDG values are ignored.
    let l = Locations::from_vars("plugin-host", w.path("proj"), |name| {
        (name == "XDG_CONFIG_HOME").then(|| OsString::from("relative/dir"))
    });
    assert_eq!(l.user, None);
}

// ---- layer rules -----------------------------------------------------------------------

#[test]
fn no_files_is_an_empty_configuration() {
    let w = World::new();
    let c = w.load().unwrap();
    assert_eq!(c.files().count(), 0);
    assert_eq!(c.project_dir(), None);
    assert!(c.policy().is_none());
    assert!(c.plugins().next().is_none());
    assert_eq!(c.trust().mode(), SignatureMode::Ignore);
    let looked: Vec<_> = c.candidates().iter().map(|c| c.kind).collect();
    assert_eq!(
        looked,
        [
            LayerKind::System,
            LayerKind::System,
            LayerKind::User,
            LayerKind::Project
        ]
    );
    assert!(c.candidates().iter().all(|c| !c.found));
}

#[test]
fn system_then_user_then_project_each_overriding_per_key() {
    let w = World::new();
    let s2 = w.write(
        system2(),
        "[policy]\npreset = \"strict\"\n[trust]\nsignatures = \"ignore\"\n[policy.checks]\nprofile = \"fail\"\n",
    );
    let s1 = w.write(system1(), "[trust]\nsignatures = \"require\"\n");
    let u = w.write(user(), "[policy.checks]\nrustc = \"warn\"\n");
    let p = w.write(project(), "[policy.checks]\nrustc = \"ignore\"\n");
    let c = w.load().unwrap();
    let files: Vec<_> = c.files().map(|(k, p)| (k, p.to_owned())).collect();
    assert_eq!(
        files,
        vec![
            (LayerKind::System, s2.clone()),
            (LayerKind::System, s1.clone()),
            (LayerKind::User, u),
            (LayerKind::Project, p.clone()),
        ]
    );
    // etc1 comes first in XDG_CONFIG_DIRS, so it wins over etc2.
    let sig = c.trust().signatures.as_ref().unwrap();
    assert_eq!(sig.value, SignatureMode::Require);
    assert_eq!(sig.origin.file, s1);
    // Untouched keys of lower layers stay.
    assert_eq!(c.policy_preset().unwrap().value, "strict");
    assert_eq!(c.policy_preset().unwrap().origin.file, s2);
    assert_eq!(c.policy_checks()[&CheckKind::Profile].value, Severity::Fail);
    // The project overrides the user, key by key.
    let rustc = &c.policy_checks()[&CheckKind::Rustc];
    assert_eq!(rustc.value, Severity::Ignore);
    assert_eq!((rustc.origin.file.clone(), rustc.origin.line), (p, 2));
    let policy = c.policy().unwrap();
    assert_eq!(policy.severity(CheckKind::Rustc), Severity::Ignore);
    assert_eq!(policy.severity(CheckKind::Profile), Severity::Fail);
    assert_eq!(policy.severity(CheckKind::Dependencies), Severity::Fail);
    assert!(policy.name().starts_with("strict"), "{}", policy.name());
    assert_eq!(c.project_dir(), Some(w.path("proj").as_path()));
}

#[test]
fn the_nearest_project_file_wins() {
    let w = World::new();
    w.write(project(), "[policy]\npreset = \"strict\"\n");
    let near = w.write(
        "proj/sub/plugin-host.toml",
        "[policy]\npreset = \"default\"\n",
    );
    let c = w.load().unwrap();
    assert_eq!(c.files().count(), 1);
    assert_eq!(c.policy_preset().unwrap().origin.file, near);
    assert_eq!(c.project_dir(), Some(w.path("proj/sub").as_path()));
}

#[test]
fn the_explicit_file_is_the_only_layer() {
    let w = World::new();
    w.write(user(), "[policy]\npreset = \"strict\"\n");
    w.write(project(), "[trust]\nsignatures = \"require\"\n");
    let x = w.write(
        "elsewhere/mine.toml",
        "[policy.checks]\nrustc = \"ignore\"\n",
    );
    let mut l = w.locations();
    l.explicit = Some(x.clone());
    let c = Config::load(&l).unwrap();
    let files: Vec<_> = c.files().map(|(k, p)| (k, p.to_owned())).collect();
    assert_eq!(files, vec![(LayerKind::Explicit, x)]);
    assert!(c.policy_preset().is_none(), "the user file was read");
    assert!(c.trust().signatures.is_none(), "the project file was read");
    assert_eq!(c.project_dir(), Some(w.path("elsewhere").as_path()));
    assert_eq!(c.candidates().len(), 1);

    // Named but missing: an error naming the variable.
    l.explicit = Some(w.path("missing.toml"));
    let e = Config::load(&l).unwrap_err().to_string();
    assert!(e.contains("missing.toml"), "{e}");
    assert!(e.contains("$PLUGIN_HOST_CONFIG"), "{e}");
}

#[test]
fn plugin_tables_and_their_config_merge_per_key_recursively() {
    let w = World::new();
    let u = w.write(
        user(),
        r#"
[plugins.redact]
enabled = true
signatures = "require"
[plugins.redact.config]
replacement = "XXX"
patterns = ["a", "b"]
[plugins.redact.config.nested]
keep = 1
change = "user"
"#,
    );
    let p = w.write(
        project(),
        r#"
[plugins.redact]
enabled = false
config = { patterns = ["c"], nested = { change = "project", added = true } }
[plugins.hello]
replace-builtin = true
isolation = "process"
"#,
    );
    let c = w.load().unwrap();
    let r = c.plugin("redact").unwrap();
    assert!(!r.enabled());
    assert_eq!(r.enabled.as_ref().unwrap().origin.file, p);
    assert_eq!(r.signature_mode(), Some(SignatureMode::Require));
    assert_eq!(r.signatures.as_ref().unwrap().origin.file, u);
    let leaves: Vec<_> = r
        .config
        .leaves()
        .into_iter()
        .map(|l| (l.key, l.toml, l.origin.file))
        .collect();
    assert_eq!(
        leaves,
        vec![
            ("nested.added".into(), "true".into(), p.clone()),
            ("nested.change".into(), "\"project\"".into(), p.clone()),
            ("nested.keep".into(), "1".into(), u.clone()),
            // Arrays are replaced whole.
            ("patterns".into(), "[\"c\"]".into(), p.clone()),
            ("replacement".into(), "\"XXX\"".into(), u.clone()),
        ]
    );
    // The text the plugin receives is TOML with the same content.
    let text = r.config_text().unwrap();
    let back: toml_edit::DocumentMut = text.parse().unwrap();
    assert_eq!(back["replacement"].as_str(), Some("XXX"), "{text}");
    assert_eq!(back["nested"]["keep"].as_integer(), Some(1), "{text}");
    assert_eq!(back["nested"]["change"].as_str(), Some("project"), "{text}");
    assert_eq!(back["patterns"].as_array().unwrap().len(), 1, "{text}");

    let h = c.plugin("hello").unwrap();
    assert!(h.replace_builtin());
    assert_eq!(h.isolation(), Isolation::Process);
    assert!(h.enabled());
    assert_eq!(h.config_text(), None);
    assert!(!r.replace_builtin());
    assert_eq!(r.isolation(), Isolation::InProcess);
}

#[test]
fn plugin_policy_overrides() {
    let w = World::new();
    w.write(
        project(),
        r#"
[policy]
preset = "strict"
[policy.checks]
rustc = "warn"
[plugins.own-preset]
policy = "default"
[plugins.checks-only]
checks = { profile = "ignore" }
[plugins.plain]
enabled = true
"#,
    );
    let c = w.load().unwrap();
    // Its own preset: the global checks do not apply.
    let own = c.plugin("own-preset").unwrap().policy().unwrap();
    assert!(own.name().starts_with("default"));
    assert_eq!(own.severity(CheckKind::Rustc), Severity::Warn);
    assert_eq!(own.severity(CheckKind::Dependencies), Severity::Warn);
    // Checks only: the global policy, then its checks.
    let checks = c.plugin("checks-only").unwrap().policy().unwrap();
    assert_eq!(checks.severity(CheckKind::Rustc), Severity::Warn);
    assert_eq!(checks.severity(CheckKind::Profile), Severity::Ignore);
    assert_eq!(checks.severity(CheckKind::Dependencies), Severity::Fail);
    assert!(c.plugin("plain").unwrap().policy().is_none());
}

#[test]
fn a_path_under_tilde_starts_from_home() {
    let w = World::new();
    w.mkdir("home/plugins");
    w.write("home/workers/w", "");
    w.write(project(), "[search]\npaths = [\"~/plugins\", \"~\"]\n");
    w.write(user(), "[isolation]\nworkers = [\"~/workers/w\"]\n");
    let c = w.load().unwrap();
    assert_eq!(
        c.search_paths(),
        vec![w.path("home/plugins"), w.path("home")]
    );
    assert_eq!(c.workers()[0].value, w.path("home/workers/w"));

    // `~user` is not expanded: a path relative to the file like any other.
    w.write(project(), "[search]\npaths = [\"~ada/plugins\"]\n");
    let e = err(&w);
    assert!(
        e.contains("plugin-host.toml:2:") && e.contains("~ada/plugins"),
        "{e}"
    );

    // Without a home directory, a `~` path is an error at its place, saying why.
    w.write(project(), "[search]\npaths = [\"~/plugins\"]\n");
    let homeless = Locations {
        project_trust: ProjectTrust::Implicit,
        ..w.locations_with(&[])
    };
    let e = Config::load(&homeless).unwrap_err().to_string();
    assert!(e.contains("plugin-host.toml:2:10"), "{e}");
    assert!(e.contains("$HOME is not set"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_file_that_says_them() {
    let w = World::new();
    w.mkdir("home/.config/plugin-host/user-plugins");
    w.write("home/.config/plugin-host/lib/libx.so", "");
    w.mkdir("proj/vendored");
    w.write(
        user(),
        "[search]\npaths = [\"user-plugins\"]\n[plugins.x]\npath = \"lib/libx.so\"\n",
    );
    let c = w.load().unwrap();
    assert_eq!(
        c.search_paths(),
        vec![w.path("home/.config/plugin-host/user-plugins")]
    );
    assert_eq!(
        c.plugin("x").unwrap().path.as_ref().unwrap().value,
        w.path("home/.config/plugin-host/lib/libx.so")
    );

    // The project's list replaces the user's whole, resolved against the project directory
    // (not the working directory, `proj/sub`).
    w.write(project(), "[search]\npaths = [\"vendored\", \"sub\"]\n");
    let c = w.load().unwrap();
    assert_eq!(
        c.search_paths(),
        vec![w.path("proj/vendored"), w.path("proj/sub")]
    );
    let configured = c.configured_search_paths().unwrap();
    assert_eq!(configured[1].origin.line, 2);
    assert_eq!(configured[1].origin.column, 22);
}

#[test]
fn default_search_paths_exist_or_are_skipped_and_configured_ones_replace_them() {
    let w = World::new();
    assert_eq!(w.load().unwrap().search_paths(), Vec::<PathBuf>::new());

    w.write(project(), "");
    let dot = w.mkdir("proj/.plugins");
    let share2 = w.mkdir("share2/plugin-host/plugins");
    let data_home = w.mkdir("home/.local/share/plugin-host/plugins");
    let c = w.load().unwrap();
    assert_eq!(
        c.default_search_paths(),
        vec![dot.clone(), data_home.clone(), share2.clone()]
    );
    assert_eq!(c.search_paths(), c.default_search_paths());
    assert!(c.configured_search_paths().is_none());
    let e = &c.entries()[0];
    assert_eq!((e.key.as_str(), e.origin.as_ref()), ("search.paths", None));

    let own = w.mkdir("proj/own");
    w.write(project(), "[search]\npaths = [\"own\"]\n");
    let c = w.load().unwrap();
    assert_eq!(c.search_paths(), vec![own]);
    assert_eq!(c.default_search_paths(), vec![dot, data_home, share2]);
}

#[test]
fn trust_keys_and_mode() {
    let w = World::new();
    w.write(user(), &format!("[trust]\nkeys = [\"{KEY}\"]\n"));
    let c = w.load().unwrap();
    assert_eq!(c.trust().keys.len(), 1);
    assert_eq!(c.trust().keys[0].value, KEY);
    assert_eq!(c.trust().keys[0].origin.column, 9);
    assert_eq!(
        c.trust().mode(),
        SignatureMode::Warn,
        "keys make `warn` the default"
    );
    assert!(schema::minisign_key_shape(KEY));
    assert!(!schema::minisign_key_shape(&KEY[..55]));
    assert!(!schema::minisign_key_shape(&KEY.replacen("RW", "AW", 1)));
}

#[test]
fn entries_name_every_value_with_its_origin() {
    let w = World::new();
    let p = w.write(
        project(),
        "[policy]\npreset = \"strict\"\n\n[plugins.redact.config]\nreplacement = \"#\"\n",
    );
    let c = w.load().unwrap();
    let entries = c.entries();
    let find = |k: &str| entries.iter().find(|e| e.key == k).unwrap();
    let preset = find("policy.preset");
    assert_eq!(preset.toml, "\"strict\"");
    let origin = preset.origin.as_ref().unwrap();
    assert_eq!(
        (origin.file.clone(), origin.line, origin.column),
        (p.clone(), 2, 10)
    );
    let r = find("plugins.redact.config.replacement");
    assert_eq!(r.json, serde_json::json!("#"));
    assert_eq!(r.origin.as_ref().unwrap().line, 5);
}

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
