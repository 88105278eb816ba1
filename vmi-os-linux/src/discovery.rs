//! Zero-configuration discovery: a [`Kernel`] from nothing but the guest's memory.
//!
//! 1. Locate the kernel image and its KASLR slide ([`KernelImage::locate`]).
//! 2. Decode kallsyms into symbols at link-time addresses.
//! 3. Read the BTF blob (`__start_BTF`..`__stop_BTF`) and parse it into types.

use vmi_core::{AddressSpace, Profile, Session, Va};

use crate::btf::Btf;
use crate::error::LinuxError;
use crate::kallsyms::KernelImage;
use crate::kernel::Kernel;
use crate::kernel_space::RootSource;

/// The largest BTF blob read: real kernels carry 4 to 8 MiB; the bound keeps a corrupted
/// `__stop_BTF` from sizing an allocation.
pub const MAX_BTF_BYTES: u64 = 64 << 20;

/// Finds the kernel in `session`'s memory and builds its profile from kallsyms and BTF.
pub fn discover(session: &Session) -> Result<Kernel, LinuxError> {
    let (spaces, source) = crate::kernel_space::search_spaces(session)?;
    discover_in(session, &spaces, source)
}

/// [`discover`] in address spaces found earlier (see [`crate::kernel_space::search_spaces`]).
pub fn discover_in(
    session: &Session,
    spaces: &[AddressSpace],
    source: RootSource,
) -> Result<Kernel, LinuxError> {
    let image = KernelImage::locate_in_spaces(session, spaces)?;
    discover_from_image(session, &image, source)
}

/// [`discover`] for an already located image, found in a space that came about as `source`
/// says.
pub fn discover_from_image(
    session: &Session,
    image: &KernelImage,
    source: RootSource,
) -> Result<Kernel, LinuxError> {
    let symbols = image.kallsyms()?;
    let slide = image.virtual_slide();
    let mut profile = symbols.to_profile(slide);
    profile.source = format!("kallsyms+BTF of {}", image.release());

    let start = symbols
        .lookup("__start_BTF")
        .ok_or_else(|| vmi_core::ProfileError::MissingSymbol("__start_BTF".into()))?;
    let stop = symbols
        .lookup("__stop_BTF")
        .ok_or_else(|| vmi_core::ProfileError::MissingSymbol("__stop_BTF".into()))?;
    profile.merge(btf_types(session, image.space(), start, stop)?);
    crate::globals::apply(&mut profile);
    let mut kernel = Kernel::new(
        profile,
        slide as u64,
        image.space(),
        image.banner().to_owned(),
    );
    kernel.use_own_space(session, image.banner_va(), source);
    Ok(kernel)
}

/// The types of the kernel's BTF blob at run-time addresses `start..stop`.
pub fn btf_types(
    session: &Session,
    space: AddressSpace,
    start: u64,
    stop: u64,
) -> Result<Profile, LinuxError> {
    let len = stop
        .checked_sub(start)
        .filter(|&len| len > 0 && len <= MAX_BTF_BYTES)
        .ok_or_else(|| LinuxError::Corrupt {
            what: "BTF section",
            at: Va::new(start),
            reason: format!("__stop_BTF {stop:#x} does not follow __start_BTF within 64 MiB"),
        })?;
    let mut blob = vec![0u8; len as usize];
    session
        .virtual_memory(space)
        .read_exact(Va::new(start), &mut blob)?;
    // The profile keeps the blob for the types it converts on demand: hand it over rather
    // than have it copy the 4-8 MiB again.
    Ok(Btf::profile_from_blob(blob)?)
}

/// A kernel from a profile the user gave (`--symbols`: a Volatility 3 ISF or a System.map).
/// The slide is where `linux_banner` is found in memory, in the first of `spaces` (see
/// [`crate::kernel_space::search_spaces`]) that maps it; a profile without types (System.map)
/// takes them from the guest's BTF.
pub fn from_profile(
    session: &Session,
    spaces: &[AddressSpace],
    source: RootSource,
    mut profile: Profile,
) -> Result<Kernel, LinuxError> {
    let link = profile.symbol_address("linux_banner")?;
    let found = spaces.iter().find_map(|&space| {
        crate::cache::find_slide(session, space, link, b"Linux version ").map(|s| (space, s))
    });
    let (space, slide) = found.ok_or_else(|| LinuxError::Corrupt {
        what: "linux_banner",
        at: Va::new(link),
        reason: format!(
            "no \"Linux version \" at the profile's linux_banner under any KASLR slide: \
             the profile ({}) is not this guest's kernel",
            profile.source
        ),
    })?;
    let banner = session
        .virtual_memory(space)
        .read_cstr(Va::new(link.wrapping_add(slide)), 1024)?;
    if profile.user_types().next().is_none() {
        let start = profile.symbol_address("__start_BTF")?.wrapping_add(slide);
        let stop = profile.symbol_address("__stop_BTF")?.wrapping_add(slide);
        profile.merge(btf_types(session, space, start, stop)?);
    }
    crate::globals::apply(&mut profile);
    let mut kernel = Kernel::new(profile, slide, space, banner);
    let banner_va = Va::new(link.wrapping_add(slide));
    kernel.use_own_space(session, banner_va, source);
    Ok(kernel)
}
