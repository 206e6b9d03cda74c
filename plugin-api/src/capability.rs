//! Capabilities: typed trait objects a plugin hands to the host.
//!
//! A capability *kind* pairs a name (`"command"`) with the FFI-safe object type that carries
//! it ([`CapabilityKind::Object`], an `abi_stable` type). The plugin wraps an object into a
//! [`CapabilityExport`], which records the object's `abi_stable` layout; the host compares
//! that layout with the layout of the type it expects for the kind before it ever hands the
//! object out, so a capability is only ever used as the type it was registered as.
//!
//! Applications define their own kinds the same way [`crate::CommandKind`] is defined,
//! without touching this crate or the host.

use std::ffi::c_void;

use abi_stable::std_types::RString;
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;

/// A kind of capability: a stable name and the FFI-safe type of its objects.
pub trait CapabilityKind: 'static {
    /// The kind's name, as shown to users and used for lookups (`"command"`).
    const KIND: &'static str;
    /// The object type the plugin registers and the host calls, e.g. an `abi_stable`
    /// `#[sabi_trait]` object such as `FfiCommand_TO<'static, RBox<()>>`.
    type Object: StableAbi + Send + Sync + 'static;
}

/// A capability crossing from plugin to host: kind, name, the object, its layout, and how
/// to drop it (with the plugin's own allocator).
#[repr(C)]
#[derive(StableAbi)]
pub struct CapabilityExport {
    kind: RString,
    name: RString,
    layout: &'static TypeLayout,
    object: *mut c_void,
    drop_object: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: `object` points to a `K::Object`, which `new` requires to be `Send + Sync`;
// the other fields are owned strings and `'static` data.
unsafe impl Send for CapabilityExport {}
// SAFETY: as above.
unsafe impl Sync for CapabilityExport {}

unsafe extern "C" fn drop_boxed<T>(object: *mut c_void) {
    // A destructor that panics must not unwind into the host.
    let result = std::panic::catch_unwind(|| {
        // SAFETY: `object` came from `Box::into_raw(Box<T>)` in `CapabilityExport::new::<K>`
        // with `T = K::Object`, and the host calls this at most once (from `Drop`).
        drop(unsafe { Box::from_raw(object.cast::<T>()) });
    });
    if result.is_err() {
        std::process::abort();
    }
}

impl CapabilityExport {
    /// Wraps `object` as a capability of kind `K` named `name`.
    pub fn new<K: CapabilityKind>(name: &str, object: K::Object) -> Self {
        CapabilityExport {
            kind: K::KIND.into(),
            name: name.into(),
            layout: <K::Object as StableAbi>::LAYOUT,
            object: Box::into_raw(Box::new(object)).cast(),
            drop_object: drop_boxed::<K::Object>,
        }
    }

    /// The kind's name.
    ///
    /// A host must not call this on a capability it has not validated: the bytes come from
    /// plugin code and nothing enforces that they are UTF-8. Use [`Self::kind_bytes`].
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The capability's name (see [`Self::kind`] for the same caveat; [`Self::name_bytes`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind's name as the raw bytes the plugin sent.
    pub fn kind_bytes(&self) -> &[u8] {
        self.kind.as_bytes()
    }

    /// The capability's name as the raw bytes the plugin sent.
    pub fn name_bytes(&self) -> &[u8] {
        self.name.as_bytes()
    }

    /// The `abi_stable` layout of the object, as the plugin compiled it.
    pub fn layout(&self) -> &'static TypeLayout {
        self.layout
    }

    /// Borrows the object as a `K::Object`.
    ///
    /// # Safety
    /// The caller must have established that the object really is a `K::Object`: the kind
    /// names match and `abi_stable`'s layout check of [`Self::layout`] against
    /// `K::Object::LAYOUT` passed. The host does this once, when the capability is registered.
    pub unsafe fn object_unchecked<K: CapabilityKind>(&self) -> &K::Object {
        // SAFETY: the pointer is a live, never-freed-before-drop `Box<K::Object>` per the
        // caller's contract; the borrow is tied to `&self`.
        unsafe { &*self.object.cast::<K::Object>() }
    }
}

impl Drop for CapabilityExport {
    fn drop(&mut self) {
        // SAFETY: `drop_object` was built for exactly this object's type, and `drop` runs once.
        unsafe { (self.drop_object)(self.object) }
    }
}
