//! Windows only: what the host holds on to between verification and `LoadLibrary`. Built for
//! `x86_64-pc-windows-gnu` and run under wine by `.ci/windows`, with
//! `$PLUGIN_HOST_WINDOWS_PLUGINS` naming a directory holding `hello.dll` and
//! `ctor_marker.dll` (whose `DllMain` writes the file named by `$PLUGIN_HOST_TEST_MARKER`).
#![cfg(windows)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use host::{Host, HostIdentity, ScanMode, Status};
use plugin_api::CommandKind;

fn plugins() -> PathBuf {
    PathBuf::from(
        std::env::var_os("PLUGIN_HOST_WINDOWS_PLUGINS")
            .expect("$PLUGIN_HOST_WINDOWS_PLUGINS names the built Windows plugins"),
    )
}

/// A host whose identity is `hello`'s own provenance under another name: every check passes.
fn identity(hello: &Path) -> HostIdentity {
    let mut provenance = host::read_provenance(hello).expect("hello.dll's provenance");
    provenance.name = "windows-test-host".into();
    HostIdentity::from_blob(&provenance.encode()).unwrap()
}

#[test]
fn a_verified_file_cannot_be_swapped_or_written_before_it_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hello.dll");
    fs::copy(plugins().join("hello.dll"), &target).unwrap();
    // The impostor: a real, loadable plugin whose DllMain leaves a marker when it is loaded.
    let impostor = dir.path().join("impostor.bin");
    fs::copy(plugins().join("ctor_marker.dll"), &impostor).unwrap();
    let marker = dir.path().join("marker");
    std::env::set_var("PLUGIN_HOST_TEST_MARKER", &marker);

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let hook_impostor = impostor.clone();
    let mut host = Host::builder(identity(&target))
        .before_load(move |path| {
            let mut seen = seen.lock().unwrap();
            seen.push(("rename over", fs::rename(&hook_impostor, path).err()));
            seen.push(("write", fs::OpenOptions::new().write(true).open(path).err()));
            seen.push(("delete", fs::remove_file(path).err()));
        })
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts.len(), 3, "the hook ran once: {attempts:?}");
    for (what, error) in attempts.iter() {
        let error = error
            .as_ref()
            .unwrap_or_else(|| panic!("{what} of the verified file succeeded before its load"));
        // ERROR_SHARING_VIOLATION, or ERROR_ACCESS_DENIED for a rename over an open file.
        assert!(
            matches!(error.raw_os_error(), Some(32 | 5)),
            "{what}: {error}"
        );
    }
    let hello: Vec<_> = reports.iter().filter(|r| r.path == target).collect();
    assert_eq!(hello.len(), 1, "{reports:?}");
    assert_eq!(hello[0].status, Status::Loaded, "{:?}", hello[0].message);
    assert!(host.registry().get::<CommandKind>("hello").is_ok());
    assert!(host.registry().get::<CommandKind>("marker").is_err());
    assert!(!marker.exists(), "the impostor was loaded");
    assert_eq!(
        host::read_provenance(&target).unwrap().name,
        "hello",
        "the file at the path is still the verified one"
    );
}

#[test]
fn a_dll_for_another_machine_is_the_wrong_target_before_it_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.dll");
    fs::copy(plugins().join("hello.dll"), &file).unwrap();
    let host = Host::builder(identity(&file)).build();
    assert_eq!(host.verify(&file).status, Status::Verified);
    // The COFF header's Machine, after the PE signature: ARM64 (0xAA64) for x86-64.
    let mut bytes = fs::read(&file).unwrap();
    let pe = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&bytes[pe..pe + 4], b"PE\0\0");
    bytes[pe + 4..pe + 6].copy_from_slice(&0xaa64u16.to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    let report = host.verify(&file);
    assert_eq!(report.status, Status::Rejected, "{:?}", report.message);
    assert_eq!(report.reason, Some(host::ReasonCode::TargetMismatch));
    let message = report.message.unwrap_or_default();
    assert!(message.contains("Aarch64"), "{message}");
}

#[test]
fn a_path_that_leads_elsewhere_after_verification_loads_nothing_unverified() {
    // Between verification and LoadLibrary the directory above the plugin is renamed, and
    // another put in its place holding an impostor under the plugin's name: the path found
    // again would lead to the impostor, the held handle's own name to the verified file.
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("plugins");
    fs::create_dir(&installed).unwrap();
    let target = installed.join("hello.dll");
    fs::copy(plugins().join("hello.dll"), &target).unwrap();
    let marker = dir.path().join("marker");
    std::env::set_var("PLUGIN_HOST_TEST_MARKER", &marker);
    let impostor = plugins().join("ctor_marker.dll");
    let moved = dir.path().join("moved");
    let renamed = Arc::new(Mutex::new(None));
    let seen = renamed.clone();
    let hook_dir = installed.clone();
    let mut host = Host::builder(identity(&target))
        .before_load(move |path| {
            let outcome = fs::rename(&hook_dir, &moved).and_then(|()| {
                fs::create_dir(&hook_dir)?;
                fs::copy(&impostor, path).map(|_| ())
            });
            *seen.lock().unwrap() = Some(outcome.map_err(|e| e.to_string()));
        })
        .build();
    let report = host.load(&target);
    let renamed = renamed.lock().unwrap().clone();
    assert_eq!(
        renamed,
        Some(Ok(())),
        "the directory could not be renamed, so this tests nothing"
    );
    assert!(!marker.exists(), "the impostor's DllMain ran");
    // Loaded by the verified file's own name where the system tells it (Windows), else
    // refused: the path no longer leads to the file verified (wine keeps the name a handle
    // was opened by).
    match report.status {
        Status::Loaded => assert!(host.registry().get::<CommandKind>("hello").is_ok()),
        _ => {
            assert_eq!(
                report.reason,
                Some(host::ReasonCode::LoadFailed),
                "{report:?}"
            );
            let message = report.message.unwrap_or_default();
            assert!(
                message.contains("no longer leads to the file that was verified"),
                "{message}"
            );
        }
    }
}

#[test]
fn a_file_put_where_a_loaded_plugin_was_is_refused_not_handed_that_plugins_module() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("plugin.dll");
    fs::copy(plugins().join("hello.dll"), &target).unwrap();
    let mut first = Host::builder(identity(&target)).build();
    let report = first.load(&target);
    assert_eq!(report.status, Status::Loaded, "{:?}", report.message);
    // Another host of the process loading the same file gets the module of that file.
    let mut again = Host::builder(identity(&target)).build();
    let report = again.load(&target);
    assert_eq!(report.status, Status::Loaded, "{:?}", report.message);
    assert!(again.registry().get::<CommandKind>("hello").is_ok());

    // The loaded file renamed away (a loaded DLL can be renamed, not written or deleted),
    // and another plugin put under its name: Windows would hand back `hello`'s module for
    // that name, and `hello` would run where this file was verified (without the check,
    // `hello`'s `register` runs, and is refused `undeclared-capability` only because the
    // new file declares no `hello`).
    fs::rename(&target, dir.path().join("old.dll")).expect("a loaded DLL can be renamed");
    fs::copy(plugins().join("ctor_marker.dll"), &target).unwrap();
    let marker = dir.path().join("marker");
    std::env::set_var("PLUGIN_HOST_TEST_MARKER", &marker);
    let mut second = Host::builder(identity(&target)).build();
    let report = second.load(&target);
    assert_eq!(
        report.reason,
        Some(host::ReasonCode::LoadFailed),
        "{report:?}"
    );
    assert_ne!(report.status, Status::Loaded);
    let message = report.message.unwrap_or_default();
    assert!(
        message.contains("earlier in this process") && message.contains("restart the host"),
        "{message}"
    );
    assert!(second.registry().get::<CommandKind>("hello").is_err());
    assert!(second.registry().get::<CommandKind>("marker").is_err());
    assert!(!marker.exists(), "nothing of the new file ran");
}

/// The access list of `path` in SDDL (`D:…`), as the system reads it back.
fn dacl_sddl(path: &Path) -> String {
    use std::ffi::c_void;
    use std::os::windows::ffi::OsStrExt;
    #[link(name = "advapi32")]
    extern "system" {
        fn GetNamedSecurityInfoW(
            name: *const u16,
            object_type: u32,
            info: u32,
            owner: *mut *mut c_void,
            group: *mut *mut c_void,
            dacl: *mut *mut c_void,
            sacl: *mut *mut c_void,
            descriptor: *mut *mut c_void,
        ) -> u32;
        fn ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor: *mut c_void,
            revision: u32,
            info: u32,
            text: *mut *mut u16,
            len: *mut u32,
        ) -> i32;
    }
    const SE_FILE_OBJECT: u32 = 1;
    const DACL_SECURITY_INFORMATION: u32 = 4;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let (mut dacl, mut descriptor) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: a NUL-terminated path; valid places for what is asked, null for the rest.
    let status = unsafe {
        GetNamedSecurityInfoW(
            wide.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    assert_eq!(status, 0, "GetNamedSecurityInfoW of {}", path.display());
    let (mut text, mut len) = (std::ptr::null_mut(), 0u32);
    // SAFETY: the descriptor just read; valid places for the string and its length.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            &mut len,
        )
    };
    assert_ne!(ok, 0, "converting the descriptor of {}", path.display());
    // SAFETY: `len` UTF-16 units the call wrote (the descriptor and string are left to the
    // test process's end).
    let units = unsafe { std::slice::from_raw_parts(text, len as usize) };
    String::from_utf16_lossy(units)
        .trim_end_matches('\0')
        .to_owned()
}

#[test]
fn a_secret_file_is_its_users_alone_from_its_creation() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("key");
    host::secret_file::create_new_secret(&secret).unwrap();
    let plain = dir.path().join("plain");
    fs::write(&plain, b"").unwrap();
    let sid = host::secret_file::user_sid().unwrap();
    let (dacl, usual) = (dacl_sddl(&secret), dacl_sddl(&plain));
    // Whom each entry of an access list allows: its SID, the entry's last field.
    let allowed = |dacl: &str| -> Vec<String> {
        dacl.split('(')
            .skip(1)
            .filter(|ace| ace.starts_with("A;"))
            .map(|ace| {
                ace.trim_end_matches(')')
                    .rsplit(';')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    // Windows keeps the list made, protected (nothing inherited): this user alone, full
    // access. Wine keeps Unix permissions and reads a list back from them: this user, and
    // the system (SY), which Windows grants everything anyway; nobody else.
    let exact = [
        format!("D:P(A;;FA;;;{sid})"),
        format!("D:P(A;;0x1f01ff;;;{sid})"),
    ];
    let whom = allowed(&dacl);
    assert!(
        exact.contains(&dacl)
            || (whom.contains(&sid) && whom.iter().all(|s| *s == sid || s == "SY")),
        "{dacl} (user {sid}); a file made the usual way: {usual}"
    );
    // The control: a file made the usual way allows someone else too.
    assert!(
        allowed(&usual).iter().any(|s| *s != sid && s != "SY"),
        "{usual}"
    );
    // Never over an existing file.
    let e = host::secret_file::create_new_secret(&secret).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
}

#[test]
fn a_file_reached_by_two_names_is_judged_and_loaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a-hello.dll");
    fs::copy(plugins().join("hello.dll"), &first).unwrap();
    let second = dir.path().join("b-hello.dll");
    fs::hard_link(&first, &second).expect("a hard link");
    let mut host = Host::builder(identity(&first)).build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let of = |path: &Path| {
        reports
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no report for {}: {reports:?}", path.display()))
    };
    assert_eq!(of(&first).status, Status::Loaded, "{reports:?}");
    let linked = of(&second);
    assert_eq!(linked.status, Status::Shadowed, "{linked:?}");
    assert_eq!(linked.reason, Some(host::ReasonCode::DuplicatePlugin));
    let message = linked.message.clone().unwrap_or_default();
    assert!(
        message.contains("the same file as") && message.contains("a-hello.dll"),
        "{message}"
    );
}
