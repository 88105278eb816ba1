//! Hostile page caches: real dumps with an inode's xarray, its size and a super block's inode
//! list patched in memory. The page-cache walk must end with what it could read plus a
//! warning, or a clear error; never a panic, a hang, or an allocation sized by the guest.

mod common;
mod hostile;

use std::sync::OnceLock;

use common::Guest;
use hostile::{largest_alloc, Patches};
use vmi_core::{AddressSpace, Session, Va};
use vmi_os_linux::analysis::page_cache::{cached_files, extract};
use vmi_os_linux::LinuxError;

struct Base {
    guest: Guest,
    open: hostile::OpenGuest,
    /// `/bin/busybox`'s inode (484 pages: a two-level xarray).
    inode: Va,
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.open.session
    }

    fn space(&self) -> AddressSpace {
        self.open.kernel.space()
    }
}

impl Base {
    fn off(&self, ty: &str, field: &str) -> u64 {
        self.open.kernel.profile().field_offset(ty, field).unwrap()
    }

    fn read(&self, va: Va) -> u64 {
        self.open
            .kernel
            .memory(&self.open.session)
            .read_u64(va)
            .unwrap()
    }

    fn at(&self, va: Va, plus: u64) -> Va {
        va.checked_add(plus).unwrap()
    }

    /// The root `xa_node` of busybox's page cache (its `xa_head`, untagged).
    fn root_node(&self) -> Va {
        let mapping = Va::new(self.read(self.at(self.inode, self.off("inode", "i_mapping"))));
        let head_at = self.at(
            mapping,
            self.off("address_space", "i_pages") + self.off("xarray", "xa_head"),
        );
        let head = self.read(head_at);
        assert_eq!(
            head & 3,
            2,
            "{}: busybox's xarray has a node",
            self.guest.name
        );
        Va::new(head - 2)
    }

    fn session_with(&self, patches: Patches) -> Session {
        hostile::patched_session(&self.open.memory, &self.open.registers, &patches.0)
    }
}

/// A 4-level and a 5-level busybox guest (whose initramfs keeps all of `/bin/busybox`).
fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let guests: Vec<Guest> = vmi_fixtures::select("with a busybox initramfs", |g| {
            !g.pti && g.init == vmi_fixtures::GuestInit::Busybox
        });
        let mut picked: Vec<Guest> = Vec::new();
        for paging in [4, 5] {
            picked.extend(guests.iter().find(|g| g.paging == paging).cloned());
        }
        picked
            .into_iter()
            .map(|guest| {
                let open = hostile::open_guest(&guest);
                let files = cached_files(&open.session, &open.kernel).unwrap();
                let inode = files
                    .items
                    .iter()
                    .find(|f| f.path == "/bin/busybox")
                    .expect("busybox is cached")
                    .object;
                Base { guest, open, inode }
            })
            .collect()
    })
}

/// Pages copied and warnings of extracting `path`.
fn extract_to_temp(
    session: &Session,
    base: &Base,
    path: &str,
) -> Result<(u64, Vec<String>), LinuxError> {
    let out = std::env::temp_dir().join(format!("vmi-hostile-extract-{}", std::process::id()));
    let file = std::fs::File::create(&out).unwrap();
    let r = extract(session, &base.open.kernel, path, &file).map(|x| (x.pages_copied, x.warnings));
    drop(file);
    let _ = std::fs::remove_file(&out);
    r
}

fn a_node_that_points_to_itself_is_cut_with_a_warning() {
    for b in bases() {
        let node = b.root_node();
        let slots = b.off("xa_node", "slots");
        // Slot 1 of the root (pages 64..127) now points back at the root node.
        let patches = Patches::default().u64_at(b, b.at(node, slots + 8), node.raw() + 2);
        let session = b.session_with(patches);
        let (pages, alloc) = largest_alloc(|| extract_to_temp(&session, b, "/bin/busybox"));
        // The walk still copies the other subtrees: 484 pages less the 64 of slot 1.
        let (pages, warnings) = pages.unwrap();
        assert_eq!(pages, 484 - 64, "{}", b.guest.name);
        assert!(
            warnings.iter().any(|w| w.contains("xa_node shift")),
            "{}: {warnings:?}",
            b.guest.name
        );
        assert!(alloc < 1 << 20, "{}: {alloc}-byte allocation", b.guest.name);
    }
}

fn a_bad_root_shift_is_a_warning_not_a_walk() {
    for b in bases() {
        let node = b.root_node();
        let shift = b.off("xa_node", "shift");
        let patches = Patches::default().at(b, b.at(node, shift), &[61]);
        let session = b.session_with(patches);
        let (pages, warnings) = extract_to_temp(&session, b, "/bin/busybox").unwrap();
        assert_eq!(pages, 0, "{}", b.guest.name);
        assert_eq!(warnings.len(), 1, "{}: {warnings:?}", b.guest.name);
    }
}

fn an_absurd_size_is_refused_before_any_write() {
    for b in bases() {
        let patches =
            Patches::default().u64_at(b, b.at(b.inode, b.off("inode", "i_size")), 1 << 60);
        let session = b.session_with(patches);
        match extract_to_temp(&session, b, "/bin/busybox") {
            Err(LinuxError::Corrupt { what: "inode", .. }) => {}
            other => panic!("{}: {other:?}", b.guest.name),
        }
    }
}

fn a_cyclic_inode_list_ends_with_a_warning() {
    for b in bases() {
        // busybox's inode links to itself on its super block's inode list.
        let link = b.at(b.inode, b.off("inode", "i_sb_list"));
        let patches = Patches::default().u64_at(b, link, link.raw());
        let session = b.session_with(patches);
        let (files, alloc) = largest_alloc(|| cached_files(&session, &b.open.kernel).unwrap());
        assert!(
            files.items.iter().any(|f| f.path == "/bin/busybox"),
            "{}: busybox itself is still listed",
            b.guest.name
        );
        assert!(
            files
                .warnings
                .iter()
                .any(|w| w.to_string().contains("inode list")),
            "{}: {:?}",
            b.guest.name,
            files.warnings
        );
        assert!(alloc < 1 << 20, "{}: {alloc}-byte allocation", b.guest.name);
    }
}

vmi_fixtures::real_guest_tests!(
    a_node_that_points_to_itself_is_cut_with_a_warning,
    a_bad_root_shift_is_a_warning_not_a_walk,
    an_absurd_size_is_refused_before_any_write,
    a_cyclic_inode_list_ends_with_a_warning,
);
