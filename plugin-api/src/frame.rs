//! The on-disk framing of a provenance blob.
//!
//! A blob is `MAGIC (8 bytes) | format version (u32 LE) | payload length (u32 LE) | payload`,
//! where the payload is UTF-8 JSON. It contains no pointers: it is read straight from the
//! file, where no relocation has been applied.
//!
//! The blob lives in its own section and behind the exported static [`SYMBOL`], which keeps
//! linkers from discarding it:
//! - on ELF, as the descriptor of an ELF note (name [`NOTE_NAME`]) in section [`SECTION_ELF`].
//!   Linkers gather note sections into a `PT_NOTE` segment near the start of the file, so a
//!   reader finds the blob from the program headers alone, in the file's first page, without
//!   reading the section table at the end of the file;
//! - on PE, in section [`SECTION_PE`] (8 bytes: PE's limit for section names);
//! - on Mach-O, in section [`SECTION_MACHO`] of the `__DATA` segment.

/// The 8 bytes every provenance blob starts with.
pub const MAGIC: [u8; 8] = *b"PLGPROV\0";
/// The framing/payload format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header: magic, format version, payload length.
pub const HEADER_LEN: usize = 16;
/// The largest payload a reader accepts; a real record is a few KiB.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// Section name on ELF: a note section (linkers give `.note*` sections type `SHT_NOTE`).
pub const SECTION_ELF: &str = ".note.plgprov";
/// Section name on PE (at most 8 bytes, so PE keeps it).
pub const SECTION_PE: &str = ".plgprov";
/// The name of the ELF note that carries the blob (with its NUL, as notes store it).
pub const NOTE_NAME: &[u8; 8] = b"PLGPROV\0";
/// The name of the note a **worker** binary carries its provenance in (same length as
/// [`NOTE_NAME`], same framing): a plugin reader never takes a worker for a plugin.
pub const WORKER_NOTE_NAME: &[u8; 8] = b"PLGWORK\0";
/// The ELF note type of the blob (`PLG1` read as a little-endian word).
pub const NOTE_TYPE: u32 = u32::from_le_bytes(*b"PLG1");
/// Size of an ELF note header (`namesz`, `descsz`, `type`) plus [`NOTE_NAME`].
pub const NOTE_PREFIX_LEN: usize = 12 + NOTE_NAME.len();
/// Section name on Mach-O, in the `__DATA` segment.
pub const SECTION_MACHO: &str = "__plgprov";
/// The exported symbol that holds the blob.
pub const SYMBOL: &str = "PLUGIN_HOST_PROVENANCE";

/// Why a byte slice is not a well-framed provenance blob.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the fixed header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first 8 bytes are not [`MAGIC`].
    BadMagic {
        /// The bytes found instead.
        found: [u8; 8],
    },
    /// A format version this reader does not know.
    UnknownFormat {
        /// The version found.
        version: u32,
    },
    /// The declared payload length exceeds [`MAX_PAYLOAD_LEN`] or the bytes available.
    BadLength {
        /// Length the header declares.
        declared: u64,
        /// Bytes available after the header.
        available: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooShort { len } => {
                write!(f, "provenance blob is {len} bytes, shorter than its {HEADER_LEN}-byte header")
            }
            FrameError::BadMagic { found } => write!(
                f,
                "provenance blob starts with {:?}, expected magic {:?}",
                String::from_utf8_lossy(found),
                String::from_utf8_lossy(&MAGIC)
            ),
            FrameError::UnknownFormat { version } => write!(
                f,
                "provenance format version {version} is unknown to this host (it reads version {FORMAT_VERSION})"
            ),
            FrameError::BadLength { declared, available } => write!(
                f,
                "provenance payload claims {declared} bytes but {available} are present (limit {MAX_PAYLOAD_LEN})"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Frames `payload` as a blob of the current format.
///
/// # Panics
/// If the payload is larger than [`MAX_PAYLOAD_LEN`] (a recorder bug, never a reader's).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_PAYLOAD_LEN,
        "provenance payload of {} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit",
        payload.len()
    );
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Wraps a framed blob as an ELF note (header words in the target's byte order), padded to a
/// multiple of 4 bytes as notes are.
pub fn elf_note(blob: &[u8], big_endian: bool) -> Vec<u8> {
    let word = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut note = Vec::with_capacity(NOTE_PREFIX_LEN + blob.len() + 3);
    note.extend_from_slice(&word(NOTE_NAME.len() as u32));
    note.extend_from_slice(&word(blob.len() as u32));
    note.extend_from_slice(&word(NOTE_TYPE));
    note.extend_from_slice(NOTE_NAME);
    note.extend_from_slice(blob);
    note.resize(note.len().next_multiple_of(4), 0);
    note
}

/// Validates the framing of `blob` and returns its payload.
///
/// Bytes after the payload are ignored (sections may be padded).
pub fn decode(blob: &[u8]) -> Result<&[u8], FrameError> {
    if blob.len() < HEADER_LEN {
        return Err(FrameError::TooShort { len: blob.len() });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&blob[..8]);
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let version = u32::from_le_bytes(blob[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(FrameError::UnknownFormat { version });
    }
    let declared = u32::from_le_bytes(blob[12..16].try_into().expect("4 bytes"));
    let available = blob.len() - HEADER_LEN;
    if declared as usize > MAX_PAYLOAD_LEN || declared as usize > available {
        return Err(FrameError::BadLength {
            declared: declared.into(),
            available,
        });
    }
    Ok(&blob[HEADER_LEN..HEADER_LEN + declared as usize])
}

/// Expands to the `&'static [u8]` provenance blob that the build-script recorder wrote for
/// the calling crate (it needs a `build.rs` calling `plugin_api::build::record()`). Hosts use it to learn their own provenance:
///
/// ```ignore
/// let own = plugin_api::provenance::Provenance::decode(plugin_api::provenance_blob!())?;
/// ```
#[macro_export]
macro_rules! provenance_blob {
    () => {
        $crate::__provenance_file!("bin")
    };
}

/// The section contents [`crate::export_plugin!`] embeds (see [`provenance_blob!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __provenance_section {
    () => {
        $crate::__provenance_file!("section")
    };
}

/// `$OUT_DIR/plugin-provenance-<strategy>.<ext>`: the recorder wrote one file per panic
/// strategy, and the crate expanding this knows its own.
#[doc(hidden)]
#[macro_export]
macro_rules! __provenance_file {
    ($ext:literal) => {{
        #[cfg(panic = "abort")]
        const BYTES: &[u8] = ::core::include_bytes!(::core::concat!(
            ::core::env!("OUT_DIR"),
            "/plugin-provenance-abort.",
            $ext
        ));
        #[cfg(not(panic = "abort"))]
        const BYTES: &[u8] = ::core::include_bytes!(::core::concat!(
            ::core::env!("OUT_DIR"),
            "/plugin-provenance-unwind.",
            $ext
        ));
        BYTES
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let blob = encode(b"{\"a\":1}");
        assert_eq!(decode(&blob).unwrap(), b"{\"a\":1}");
        let mut padded = blob.clone();
        padded.extend_from_slice(&[0; 7]);
        assert_eq!(decode(&padded).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn note_wraps_the_blob() {
        let blob = encode(b"{}");
        let note = elf_note(&blob, false);
        assert_eq!(note.len() % 4, 0);
        assert_eq!(&note[0..4], &8u32.to_le_bytes());
        assert_eq!(&note[4..8], &(blob.len() as u32).to_le_bytes());
        assert_eq!(&note[12..20], NOTE_NAME);
        assert_eq!(
            &note[NOTE_PREFIX_LEN..NOTE_PREFIX_LEN + blob.len()],
            &blob[..]
        );
        assert_eq!(&elf_note(&blob, true)[0..4], &8u32.to_be_bytes());
    }

    #[test]
    fn rejects_bad_frames() {
        let blob = encode(b"{}");
        assert_eq!(decode(&blob[..10]), Err(FrameError::TooShort { len: 10 }));
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(FrameError::BadMagic { .. })));
        let mut bad = blob.clone();
        bad[8] = 9;
        assert_eq!(decode(&bad), Err(FrameError::UnknownFormat { version: 9 }));
        let mut bad = blob.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bad), Err(FrameError::BadLength { .. })));
        assert!(matches!(
            decode(&blob[..blob.len() - 1]),
            Err(FrameError::BadLength {
                declared: 2,
                available: 1
            })
        ));
    }
}
