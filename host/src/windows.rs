//! The Windows system calls the host makes, in one place: a file's identity and final name,
//! loading a library with its imports looked for in the system directory only, the modules
//! loaded as plugins with the file each came from, and files only their owner may open.

use std::ffi::{c_void, OsString};
use std::fs::File;
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::io::{AsRawHandle, FromRawHandle};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

// A file's identity, and the modules loaded as plugins with the file each came from.

/// `GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT`: the module is looked up, not held.
const UNCHANGED_REFCOUNT: u32 = 0x0000_0002;

/// Each module this process loaded as a plugin (its handle, as an address) and the
/// identity of the file it was loaded from. Modules are never unloaded (`abi_stable`
/// keeps them), so a handle is never another module's.
static LOADED: Mutex<Vec<(usize, (u32, u32, u32))>> = Mutex::new(Vec::new());

#[repr(C)]
#[derive(Default)]
struct ByHandleFileInformation {
    attributes: u32,
    created: [u32; 2],
    accessed: [u32; 2],
    written: [u32; 2],
    volume_serial: u32,
    size_high: u32,
    size_low: u32,
    links: u32,
    index_high: u32,
    index_low: u32,
}

#[link(name = "kernel32")]
extern "system" {
    fn GetFileInformationByHandle(file: *mut c_void, info: *mut ByHandleFileInformation) -> i32;
    fn GetModuleHandleExW(flags: u32, name: *const u16, module: *mut *mut c_void) -> i32;
}

/// The module loaded in this process under the name `path`, if any: the one
/// `LoadLibrary` of that path hands back instead of mapping the file there now.
fn loaded_module(path: &Path) -> Option<usize> {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut module = std::ptr::null_mut();
    // SAFETY: `wide` is a NUL-terminated UTF-16 name that outlives the call, `module` a
    // valid place for the handle; the module's reference count is left as it is, and the
    // handle is only compared, never used.
    let found = unsafe { GetModuleHandleExW(UNCHANGED_REFCOUNT, wide.as_ptr(), &mut module) };
    (found != 0 && !module.is_null()).then_some(module as usize)
}

/// A load under way: no other load in this process between its check of the name it
/// loads by and its note of the module loaded (a load on another thread would otherwise
/// find this one's module before it is noted, and take it for one not the host's).
pub(crate) struct Loading<'a> {
    loaded: MutexGuard<'static, Vec<(usize, (u32, u32, u32))>>,
    file: &'a File,
    path: &'a Path,
}

impl<'a> Loading<'a> {
    /// Checks that `LoadLibrary` of `path` will map `file`, the verified file it leads to.
    /// Windows looks a module up by its name and hands back the one it has: a module
    /// already loaded under that name from another file (the one there before was
    /// renamed away, and this one put in its place), or not by the host, would run
    /// instead of what was verified; `Err` says so. Nothing loaded under that name, or
    /// this very file's module: `Ok`.
    pub(crate) fn begin(file: &'a File, path: &'a Path) -> Result<Loading<'a>, String> {
        let loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = loaded_module(path) {
            let earlier = loaded.iter().find(|(m, _)| *m == module).map(|(_, i)| *i);
            let text = path.display().to_string();
            let shown = crate::text::printable(&text);
            match earlier {
                Some(earlier) if Some(earlier) == identity(file) => {}
                Some(_) => {
                    return Err(format!(
                        "a plugin was loaded from {shown} earlier in this process, from \
                         another file than this one (that file was renamed away and this \
                         one put in its place); Windows hands back the module it loaded \
                         under that name, so this file would not be what runs: nothing of \
                         it was loaded; restart the host to load it"
                    ))
                }
                None => {
                    return Err(format!(
                        "a module is already loaded in this process under the name \
                         {shown}, not by plugin-host; Windows would hand it back instead \
                         of the file that was verified: nothing of it was loaded"
                    ))
                }
            }
        }
        Ok(Loading { loaded, file, path })
    }

    /// Notes the module now loaded under the name checked as loaded from the file.
    pub(crate) fn loaded(mut self) {
        let (Some(module), Some(id)) = (loaded_module(self.path), identity(self.file)) else {
            return;
        };
        if !self.loaded.iter().any(|(m, _)| *m == module) {
            self.loaded.push((module, id));
        }
    }
}

/// The volume and file index of `file`.
pub(crate) fn identity(file: &File) -> Option<(u32, u32, u32)> {
    let mut info = ByHandleFileInformation::default();
    // SAFETY: `info` is a writable BY_HANDLE_FILE_INFORMATION (the layout above), the
    // handle the open file's, borrowed for the call.
    let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) };
    (ok != 0).then_some((info.volume_serial, info.index_high, info.index_low))
}

/// Whether `path` now leads to `file` itself.
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    let Ok(now) = File::open(path) else {
        return false;
    };
    matches!((identity(file), identity(&now)), (Some(a), Some(b)) if a == b)
}

// A file's final name.

/// `GetFinalPathNameByHandleW` of `file`: its normalized name with the drive letter
/// (`\\?\C:\…` shortened to `C:\…`, `\\?\UNC\server\…` to `\\server\…`).
pub(crate) fn final_path(file: &std::fs::File) -> Option<PathBuf> {
    #[link(name = "kernel32")]
    extern "system" {
        fn GetFinalPathNameByHandleW(
            file: *mut std::ffi::c_void,
            path: *mut u16,
            len: u32,
            flags: u32,
        ) -> u32;
    }
    let mut buf = vec![0u16; 512];
    loop {
        let len = u32::try_from(buf.len()).ok()?;
        // SAFETY: `buf` holds `len` writable UTF-16 units; the handle is the open file's,
        // borrowed for the call; flags 0: the normalized name, with a drive letter.
        let got =
            unsafe { GetFinalPathNameByHandleW(file.as_raw_handle(), buf.as_mut_ptr(), len, 0) };
        let got = got as usize;
        if got == 0 || got > 32 * 1024 {
            return None;
        }
        if got < buf.len() {
            let name = String::from_utf16(&buf[..got]).ok();
            let shown = match name.as_deref() {
                Some(n) if n.starts_with("\\\\?\\UNC\\") => Some(format!("\\\\{}", &n[8..])),
                Some(n) if n.starts_with("\\\\?\\") && n[4..].get(1..3) == Some(":\\") => {
                    Some(n[4..].to_owned())
                }
                _ => None,
            };
            return Some(match shown {
                Some(shown) => PathBuf::from(shown),
                None => PathBuf::from(OsString::from_wide(&buf[..got])),
            });
        }
        // Too short: `got` is the length needed, the terminating NUL included.
        buf.resize(got, 0);
    }
}

// Loading a library with its imports looked for in the system directory only.

const LOAD_LIBRARY_SEARCH_SYSTEM32: u32 = 0x0000_0800;

#[link(name = "kernel32")]
extern "system" {
    fn LoadLibraryExW(name: *const u16, file: *mut c_void, flags: u32) -> *mut c_void;
    fn FreeLibrary(module: *mut c_void) -> i32;
}

/// A reference to a module, given back when dropped.
pub(crate) struct Loaded(*mut c_void);

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: a module handle `LoadLibraryExW` returned, freed once; the module stays
        // loaded while `abi_stable` holds its own reference.
        unsafe { FreeLibrary(self.0) };
    }
}

/// `LoadLibraryExW(path, NULL, LOAD_LIBRARY_SEARCH_SYSTEM32)`.
pub(crate) fn load_with_system_imports(path: &Path) -> std::io::Result<Loaded> {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: `wide` is a NUL-terminated UTF-16 path that outlives the call; the
    // reserved argument is NULL. Only a verified library is loaded here, as after.
    let module = unsafe {
        LoadLibraryExW(
            wide.as_ptr(),
            std::ptr::null_mut(),
            LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    };
    if module.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Loaded(module))
}

// Files only their owner may open.

const TOKEN_QUERY: u32 = 0x0008;
/// `TokenUser` of `TOKEN_INFORMATION_CLASS`.
const TOKEN_USER: u32 = 1;
const SDDL_REVISION_1: u32 = 1;
const GENERIC_READ: u32 = 0x8000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;
const CREATE_NEW: u32 = 1;
const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;

#[repr(C)]
struct SecurityAttributes {
    length: u32,
    descriptor: *mut c_void,
    inherit_handle: i32,
}

#[link(name = "advapi32")]
extern "system" {
    fn OpenProcessToken(process: *mut c_void, access: u32, token: *mut *mut c_void) -> i32;
    fn GetTokenInformation(
        token: *mut c_void,
        class: u32,
        info: *mut c_void,
        len: u32,
        returned: *mut u32,
    ) -> i32;
    fn ConvertSidToStringSidW(sid: *mut c_void, text: *mut *mut u16) -> i32;
    fn ConvertStringSecurityDescriptorToSecurityDescriptorW(
        sddl: *const u16,
        revision: u32,
        descriptor: *mut *mut c_void,
        len: *mut u32,
    ) -> i32;
}

#[link(name = "kernel32")]
extern "system" {
    fn GetCurrentProcess() -> *mut c_void;
    fn CloseHandle(handle: *mut c_void) -> i32;
    fn LocalFree(memory: *mut c_void) -> *mut c_void;
    fn CreateFileW(
        name: *const u16,
        access: u32,
        share: u32,
        security: *const SecurityAttributes,
        disposition: u32,
        flags: u32,
        template: *mut c_void,
    ) -> *mut c_void;
}

/// Memory the system allocated for us, given back with `LocalFree`.
struct Local(*mut c_void);

impl Drop for Local {
    fn drop(&mut self) {
        // SAFETY: allocated by the system call that returned it, freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// This process's user's SID, as text (`S-1-5-21-…`).
pub(crate) fn user_sid() -> io::Result<String> {
    let mut token = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of this process, a valid place for the token's handle.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let sid = (|| {
        let mut len = 0u32;
        // SAFETY: asks the size only (no buffer); fails with "insufficient buffer".
        unsafe { GetTokenInformation(token, TOKEN_USER, std::ptr::null_mut(), 0, &mut len) };
        if len == 0 || len > 4096 {
            return Err(io::Error::last_os_error());
        }
        // 8-byte aligned room for the TOKEN_USER and the SID it points into.
        let mut buffer = vec![0u64; (len as usize).div_ceil(8)];
        // SAFETY: `buffer` holds `len` writable bytes, aligned for TOKEN_USER.
        let ok = unsafe {
            GetTokenInformation(token, TOKEN_USER, buffer.as_mut_ptr().cast(), len, &mut len)
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // TOKEN_USER begins with SID_AND_ATTRIBUTES, which begins with the SID's pointer
        // (into `buffer`, alive until the end of this closure).
        let sid = buffer[0] as usize as *mut c_void;
        let mut text = std::ptr::null_mut();
        // SAFETY: `sid` is the valid SID the call above wrote; `text` a valid place for
        // the string the system allocates.
        if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let text = Local(text.cast());
        // SAFETY: a NUL-terminated UTF-16 string the system wrote, read up to its NUL.
        let wide = unsafe {
            let start = text.0 as *const u16;
            let mut n = 0;
            while *start.add(n) != 0 {
                n += 1;
            }
            std::slice::from_raw_parts(start, n)
        };
        Ok(std::ffi::OsString::from_wide(wide)
            .to_string_lossy()
            .into_owned())
    })();
    // SAFETY: the token handle opened above, closed once.
    unsafe { CloseHandle(token) };
    sid
}

/// `path`, created new with a protected access list granting this user alone full
/// access.
pub(crate) fn create_owner_only(path: &Path) -> io::Result<File> {
    let sddl: Vec<u16> = format!("D:P(A;;FA;;;{})", user_sid()?)
        .encode_utf16()
        .chain([0])
        .collect();
    let mut descriptor = std::ptr::null_mut();
    // SAFETY: a NUL-terminated UTF-16 SDDL string, a valid place for the descriptor the
    // system allocates (freed by `Local`); the size is not asked for.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let descriptor = Local(descriptor);
    let security = SecurityAttributes {
        length: std::mem::size_of::<SecurityAttributes>() as u32,
        descriptor: descriptor.0,
        inherit_handle: 0,
    };
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: a NUL-terminated UTF-16 path and valid security attributes, both alive for
    // the call; no template; the handle is checked before it is owned.
    let handle = unsafe {
        CreateFileW(
            wide.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            &security,
            CREATE_NEW,
            FILE_ATTRIBUTE_NORMAL,
            std::ptr::null_mut(),
        )
    };
    if handle as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a valid file handle just created for us, owned by nothing else.
    Ok(unsafe { File::from_raw_handle(handle) })
}
