//! A new file for a secret (a signing key): only its owner may read or write it, from the
//! moment it exists.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates the file `path`, which must not exist, so that only this process's user may read
/// or write it: mode `0600` on Unix; on Windows a protected access list (nothing inherited
/// from the directory) granting the user alone full access. The file is created so, not made
/// private after, so no one else can open it in between.
pub fn create_new_secret(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }
    #[cfg(windows)]
    {
        windows::create_owner_only(path)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = path;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no way to make a file private to its owner here",
        ))
    }
}

#[cfg(windows)]
mod windows {
    use std::ffi::c_void;
    use std::fs::File;
    use std::io;
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    use std::os::windows::io::FromRawHandle;
    use std::path::Path;

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
    pub(super) fn user_sid() -> io::Result<String> {
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
    pub(super) fn create_owner_only(path: &Path) -> io::Result<File> {
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
}

/// This process's user's SID as text (Windows), for a test to compare an access list with.
#[cfg(windows)]
#[doc(hidden)]
pub fn user_sid() -> io::Result<String> {
    windows::user_sid()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_made_new_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        super::create_new_secret(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = super::create_new_secret(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
