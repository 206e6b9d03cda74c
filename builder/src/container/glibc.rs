//! The C library versions a file needs: the highest `GLIBC_x.y` symbol version it names.

use std::path::Path;

use object::{Object, ObjectSection};

use super::error::ContainerError;

/// The highest `GLIBC_x.y` version the ELF file at `path` needs, as `(x, y)`; `None` for a
/// file that needs no versioned glibc symbol (or is not ELF).
pub fn glibc_needed(path: &Path) -> Result<Option<(u32, u32)>, ContainerError> {
    let data = std::fs::read(path).map_err(ContainerError::io(path))?;
    let Ok(file) = object::File::parse(&*data) else {
        return Ok(None);
    };
    // The names of the versions a file needs are strings of its dynamic string table.
    let Some(dynstr) = file.section_by_name(".dynstr") else {
        return Ok(None);
    };
    let Ok(strings) = dynstr.data() else {
        return Ok(None);
    };
    Ok(strings
        .split(|&b| b == 0)
        .filter_map(|s| parse(std::str::from_utf8(s).ok()?))
        .max())
}

fn parse(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.strip_prefix("GLIBC_")?.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `2.34` for `(2, 34)`.
pub fn show(version: (u32, u32)) -> String {
    format!("{}.{}", version.0, version.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_needs_some_glibc() {
        let me = std::env::current_exe().unwrap();
        let needed = glibc_needed(&me).unwrap().expect("a glibc version");
        assert!(needed >= (2, 2), "{needed:?}");
        assert_eq!(parse("GLIBC_2.3.4"), Some((2, 3)));
        assert_eq!(parse("GLIBC_PRIVATE"), None);
    }
}
