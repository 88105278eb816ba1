//! `struct super_block`, `struct inode` and `struct address_space`: the page cache, reached the
//! way the kernel's own `iterate_supers` and `evict_inodes` do.
//!
//! Every mounted (and internal) filesystem's `super_block` is on the `super_blocks` list
//! (`s_list`); each keeps its in-memory inodes on `s_inodes` (`inode.i_sb_list`), its mounts on
//! `s_mounts` (`mount.mnt_instance`). An inode's cached pages hang off its `i_mapping` (normally
//! its own embedded `i_data`): `nrpages` counts them, `i_pages` is the xarray from page index to
//! `struct folio`/`struct page`. Its names are the dentries on `i_dentry` (`dentry.d_u.d_alias`).
//!
//! A `struct page` lives in the `vmemmap` array, so its frame number is its distance from
//! `vmemmap_base` in `sizeof(struct page)` units.

use vmi_core::{Pa, PagingMode, Profile, ProfileError, Va, VirtualMemory};

use vmi_core::profile::TypeRef;

use crate::comps::layout::{unexpected_layout, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::kernel::Kernel;

/// Where the fields of `super_block`, `inode`, `address_space`, `dentry` (its alias link) and
/// `mount` (its instance link) are.
#[derive(Debug, Clone)]
pub struct InodeOffsets {
    /// `super_block.s_list`.
    pub s_list: u64,
    /// `super_block.s_inodes`.
    pub s_inodes: u64,
    /// `super_block.s_mounts`.
    pub s_mounts: u64,
    s_type: Scalar,
    s_dev: Scalar,
    sb_span: usize,
    fs_name: Scalar,
    /// `inode.i_sb_list`.
    pub i_sb_list: u64,
    i_mode: Scalar,
    i_ino: Scalar,
    i_size: Scalar,
    i_mapping: Scalar,
    i_dentry_first: Scalar,
    i_data: u64,
    inode_span: usize,
    nrpages: Scalar,
    i_pages: u64,
    d_alias: u64,
    /// `mount.mnt_instance`.
    pub mnt_instance: u64,
    mount_mnt: u64,
}

fn span(ty: &str, fields: &[Scalar]) -> Result<usize, ProfileError> {
    let end = fields.iter().map(Scalar::end).max().unwrap_or(0);
    usize::try_from(end)
        .ok()
        .filter(|&e| e as u64 <= crate::comps::layout::MAX_STRUCT_SIZE)
        .ok_or_else(|| unexpected_layout(ty, "<span>", "too large"))
}

impl InodeOffsets {
    /// Resolves the layout from the profile.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        let s_type = Scalar::resolve(profile, "super_block", "s_type")?;
        let s_dev = Scalar::resolve(profile, "super_block", "s_dev")?;
        let i_mode = Scalar::resolve(profile, "inode", "i_mode")?;
        let i_ino = Scalar::resolve(profile, "inode", "i_ino")?;
        let i_size = Scalar::resolve(profile, "inode", "i_size")?;
        let i_mapping = Scalar::resolve(profile, "inode", "i_mapping")?;
        let i_dentry_first = Scalar::resolve_nested(profile, "inode", "i_dentry", "first")?;
        let i_data = profile.field_offset("inode", "i_data")?;
        let nrpages = Scalar::resolve(profile, "address_space", "nrpages")?;
        let nrpages_in_inode = Scalar {
            offset: i_data + nrpages.offset,
            ..nrpages
        };
        // `d_alias` sits in the anonymous-typed union `d_u` (with `d_rcu`, `d_in_lookup_hash`).
        let d_u = profile.field("dentry", "d_u")?;
        let d_u_type = match &d_u.ty {
            TypeRef::Union(n) | TypeRef::Struct(n) => n.clone(),
            _ => return Err(unexpected_layout("dentry", "d_u", "not a union")),
        };
        let d_alias = d_u.offset + profile.field_offset(&d_u_type, "d_alias")?;
        Ok(Self {
            s_list: profile.field_offset("super_block", "s_list")?,
            s_inodes: profile.field_offset("super_block", "s_inodes")?,
            s_mounts: profile.field_offset("super_block", "s_mounts")?,
            sb_span: span("super_block", &[s_type, s_dev])?,
            s_type,
            s_dev,
            fs_name: Scalar::resolve(profile, "file_system_type", "name")?,
            i_sb_list: profile.field_offset("inode", "i_sb_list")?,
            inode_span: span(
                "inode",
                &[
                    i_mode,
                    i_ino,
                    i_size,
                    i_mapping,
                    i_dentry_first,
                    nrpages_in_inode,
                ],
            )?,
            i_mode,
            i_ino,
            i_size,
            i_mapping,
            i_dentry_first,
            i_data,
            nrpages,
            i_pages: profile.field_offset("address_space", "i_pages")?,
            d_alias,
            mnt_instance: profile.field_offset("mount", "mnt_instance")?,
            mount_mnt: profile.field_offset("mount", "mnt")?,
        })
    }
}

/// A filesystem instance.
#[derive(Debug, Clone)]
pub struct SuperBlock {
    /// Where its `struct super_block` is.
    pub at: Va,
    /// Its type's name (`ext4`, `tmpfs`).
    pub fs_type: String,
    /// `s_dev`, the kernel's encoding (major << 20 | minor).
    pub dev: u64,
}

/// Reads the super block at `at`.
pub fn read_super_block(
    mem: &VirtualMemory<'_>,
    offsets: &InodeOffsets,
    at: Va,
) -> Result<SuperBlock, LinuxError> {
    let sb = StructBuf::read(mem, "super_block", at, offsets.sb_span)?;
    let ty = sb.va(offsets.s_type)?;
    let name_ptr = ty
        .checked_add(offsets.fs_name.offset)
        .map(|p| mem.read_va(p))
        .transpose()?
        .ok_or_else(|| sb.corrupt("s_type overflows".into()))?;
    Ok(SuperBlock {
        at,
        fs_type: mem.read_cstr(name_ptr, 64)?,
        dev: sb.get(offsets.s_dev)?,
    })
}

/// An in-memory inode.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Where its `struct inode` is.
    pub at: Va,
    /// `i_ino`.
    pub ino: u64,
    /// `i_mode` (type and permission bits).
    pub mode: u16,
    /// `i_size` in bytes (never negative: a negative `loff_t` reads as 0).
    pub size: u64,
    /// Its `address_space` (`i_mapping`).
    pub mapping: Va,
    /// Pages cached (`i_mapping->nrpages`).
    pub nrpages: u64,
    /// Its first dentry (name), if any.
    pub dentry: Option<Va>,
}

/// Reads the inode at `at`.
pub fn read_inode(
    mem: &VirtualMemory<'_>,
    offsets: &InodeOffsets,
    at: Va,
) -> Result<Inode, LinuxError> {
    let i = StructBuf::read(mem, "inode", at, offsets.inode_span)?;
    let mapping = i.va(offsets.i_mapping)?;
    let own = at.checked_add(offsets.i_data);
    let nrpages = if Some(mapping) == own {
        i.get(Scalar {
            offset: offsets.i_data + offsets.nrpages.offset,
            ..offsets.nrpages
        })?
    } else if mapping.raw() == 0 {
        0
    } else {
        let at = mapping
            .checked_add(offsets.nrpages.offset)
            .ok_or_else(|| i.corrupt("i_mapping overflows".into()))?;
        mem.read_u64(at)?
    };
    let size = i.get(offsets.i_size)?;
    let first = i.get(offsets.i_dentry_first)?;
    Ok(Inode {
        at,
        ino: i.get(offsets.i_ino)?,
        mode: i.get(offsets.i_mode)? as u16,
        size: if (size as i64) < 0 { 0 } else { size },
        mapping,
        nrpages,
        dentry: (first != 0)
            .then(|| Va::new(first).checked_sub(offsets.d_alias))
            .flatten(),
    })
}

impl InodeOffsets {
    /// The address of the `i_pages` xarray of the address space at `mapping`.
    pub fn pages_of(&self, mapping: Va) -> Option<Va> {
        mapping.checked_add(self.i_pages)
    }

    /// The `vfsmount` of the `struct mount` whose `mnt_instance` link is at `link`.
    pub fn vfsmount_of_instance(&self, link: Va) -> Option<Va> {
        link.checked_sub(self.mnt_instance)?
            .checked_add(self.mount_mnt)
    }
}

/// Turns `struct page` addresses into physical frames: `vmemmap_base` and the size of a
/// `struct page`.
#[derive(Debug, Clone, Copy)]
pub struct PageFrames {
    vmemmap: u64,
    page_size: u64,
}

impl PageFrames {
    /// From the kernel: `vmemmap_base` (randomised with KASLR's memory randomisation) or the
    /// fixed base of its paging mode.
    pub fn resolve(kernel: &Kernel, mem: &VirtualMemory<'_>) -> Result<Self, LinuxError> {
        let vmemmap = match kernel.symbol("vmemmap_base") {
            Ok(at) => mem.read_u64(at)?,
            Err(_) => match kernel.space().mode {
                PagingMode::Ia32e5 => 0xffd4_0000_0000_0000,
                _ => 0xffff_ea00_0000_0000,
            },
        };
        let page_size = kernel.profile().struct_size("page")?;
        if page_size == 0 || page_size > 256 {
            return Err(LinuxError::Corrupt {
                what: "struct page",
                at: Va::new(vmemmap),
                reason: format!("a size of {page_size} bytes"),
            });
        }
        Ok(Self { vmemmap, page_size })
    }

    /// The physical address of the frame `page` describes, if it lies in the vmemmap array.
    pub fn frame(&self, page: Va) -> Option<Pa> {
        let off = page.raw().checked_sub(self.vmemmap)?;
        if off % self.page_size != 0 {
            return None;
        }
        (off / self.page_size).checked_mul(4096).map(Pa::new)
    }
}
