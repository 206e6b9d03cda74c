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

// Bad input, `[isolation] workers`, trusting project files, sizes and file types.
mod input;
