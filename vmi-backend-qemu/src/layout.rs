//! Parsers of QEMU's monitor text and of `/proc/PID/maps`: where guest RAM is.
//!
//! All of them take text and never panic on malformed input; lines they do not understand are
//! skipped.

/// One guest-physical range of the `system` FlatView that a RAM block backs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatRange {
    /// First guest-physical address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// `ram`, `rom`, `romd`, `i/o`, ...
    pub kind: String,
    /// The memory region's name (the RAM block's for RAM).
    pub region: String,
    /// Offset into the region (`@...`, 0 when absent).
    pub offset: u64,
}

/// The ranges of the FlatView whose root is `system` in `info mtree -f` text: the address
/// space the vCPUs see outside SMM.
pub fn parse_mtree_system(text: &str) -> Vec<FlatRange> {
    let mut out = Vec::new();
    let mut in_system = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("FlatView #") {
            if in_system {
                break;
            }
            continue;
        }
        if let Some(root) = t.strip_prefix("Root memory region:") {
            in_system = root.trim() == "system";
            continue;
        }
        if in_system {
            if let Some(r) = parse_flat_line(t) {
                out.push(r);
            }
        }
    }
    out
}

/// `0000000000100000-000000000fffffff (prio 0, ram): ram0 @0000000000100000`
fn parse_flat_line(t: &str) -> Option<FlatRange> {
    let (range, rest) = t.split_once(' ')?;
    let (a, b) = range.split_once('-')?;
    let start = u64::from_str_radix(a, 16).ok()?;
    let last = u64::from_str_radix(b, 16).ok()?;
    let len = last.checked_sub(start)?.checked_add(1)?;
    let rest = rest.trim_start().strip_prefix('(')?;
    let (attrs, rest) = rest.split_once("):")?;
    let kind = attrs.rsplit(',').next()?.trim().to_owned();
    let rest = rest.trim();
    let (region, offset) = match rest.rsplit_once(" @") {
        Some((name, off)) if u64::from_str_radix(off.trim(), 16).is_ok() => {
            (name.trim(), u64::from_str_radix(off.trim(), 16).ok()?)
        }
        _ => (rest, 0),
    };
    Some(FlatRange {
        start,
        len,
        kind,
        region: region.to_owned(),
        offset,
    })
}

/// One line of HMP `info ramblock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamBlock {
    /// Block name (`pc.ram`, `ram0`, `0000:00:02.0/vga.vram`).
    pub name: String,
    /// Used length in bytes.
    pub used: u64,
    /// Maximum length in bytes (resizable blocks).
    pub total: u64,
}

/// Parses `info ramblock`: `name PSize Offset Used Total`, PSize being `4 KiB`.
pub fn parse_ramblocks(text: &str) -> Vec<RamBlock> {
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let n = f.len();
            Some(RamBlock {
                name: f[0].to_owned(),
                used: hex(f[n - 2])?,
                total: hex(f[n - 1])?,
            })
        })
        .collect()
}

/// One writable mapping of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMapping {
    /// Start address in the QEMU process.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// The file, `[heap]`, or empty for anonymous memory.
    pub path: String,
}

/// The readable and writable mappings of a `/proc/PID/maps` text.
pub fn parse_rw_mappings(text: &str) -> Vec<HostMapping> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(6, ' ');
            let (a, b) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            if !perms.starts_with("rw") {
                return None;
            }
            let start = u64::from_str_radix(a, 16).ok()?;
            let end = u64::from_str_radix(b, 16).ok()?;
            let path = f.nth(3).unwrap_or("").trim().to_owned();
            Some(HostMapping {
                start,
                len: end.checked_sub(start)?,
                path,
            })
        })
        .collect()
}

/// Where a gdbstub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddress {
    /// A Unix socket.
    Unix(String),
    /// A TCP address (`127.0.0.1:1234`).
    Tcp(String),
}

impl std::fmt::Display for GdbAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GdbAddress::Unix(p) => write!(f, "unix:{p}"),
            GdbAddress::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// The `gdb` chardev of HMP `info chardev`: its address and whether a client is connected.
///
/// `gdb: filename=disconnected:unix:/tmp/g.sock,server=on` (free) or `gdb:
/// filename=unix:/tmp/g.sock,server=on` (a client is attached).
pub fn parse_gdb_chardev(text: &str) -> Option<(GdbAddress, bool)> {
    let line = text.lines().find(|l| l.trim_start().starts_with("gdb:"))?;
    let spec = line.split_once("filename=")?.1.trim();
    let (spec, connected) = match spec.strip_prefix("disconnected:") {
        Some(s) => (s, false),
        None => (spec, true),
    };
    let addr = spec.split(',').next()?;
    let addr = if let Some(p) = addr.strip_prefix("unix:") {
        GdbAddress::Unix(p.to_owned())
    } else if let Some(a) = addr.strip_prefix("tcp:") {
        // QEMU prints the listening address as given (`tcp:127.0.0.1:1234`; `:1234` for any).
        let a = a
            .strip_prefix(':')
            .map_or_else(|| a.to_owned(), |p| format!("127.0.0.1:{p}"));
        GdbAddress::Tcp(a)
    } else {
        return None;
    };
    Some((addr, connected))
}

/// Quad words of HMP `xp /Ngx ADDR` output (`0000000000100000: 0x... 0x...`).
pub fn parse_xp(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|w| u64::from_str_radix(w.strip_prefix("0x")?, 16).ok())
        })
        .collect()
}

/// The value of `NAME=hex` in one vCPU block of `info registers` text (`R8 =` and
/// `GDT=     ` spacing included).
pub fn hmp_register(block: &str, name: &str) -> Option<u64> {
    let block = block.replace(" =", "=");
    let pat = format!("{name}=");
    let mut rest = block.as_str();
    while let Some(i) = rest.find(&pat) {
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + pat.len()..];
        if before_ok {
            let hex: String = after
                .trim_start_matches(' ')
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect();
            return u64::from_str_radix(&hex, 16).ok();
        }
        rest = after;
    }
    None
}

/// Splits `info registers -a` text into the blocks of each vCPU, in order (`CPU#n` headers).
pub fn split_cpu_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        if let Some(n) = line.trim().strip_prefix("CPU#") {
            if let Ok(i) = n.trim().parse() {
                out.push((i, String::new()));
                continue;
            }
        }
        if let Some((_, b)) = out.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTREE: &str = "FlatView #0\n AS \"cpu-smm-1\", root: memory\n Root memory region: memory\n  0000000000000000-00000000000bffff (prio 0, ram): ram0\n\nFlatView #1\n AS \"memory\", root: system\n Root memory region: system\n  0000000000000000-000000000009ffff (prio 0, ram): ram0\n  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem\n  00000000000c0000-00000000000c9fff (prio 0, rom): ram0 @00000000000c0000\n  0000000000100000-000000000fffffff (prio 0, ram): ram0 @0000000000100000\n  00000000febf0400-00000000febf041f (prio 0, i/o): vga ioports remapped\n  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios\n\nFlatView #2\n Root memory region: io\n  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan\n";

    #[test]
    fn mtree_system_view() {
        let r = parse_mtree_system(MTREE);
        assert_eq!(r.len(), 6);
        assert_eq!(
            r[3],
            FlatRange {
                start: 0x100000,
                len: 0xff00000,
                kind: "ram".into(),
                region: "ram0".into(),
                offset: 0x100000
            }
        );
        assert_eq!(r[0].offset, 0);
        assert_eq!(r[4].region, "vga ioports remapped");
        assert_eq!(r[2].kind, "rom");
        assert!(parse_mtree_system("garbage\n(((\n-").is_empty());
    }

    #[test]
    fn ramblocks_and_maps() {
        let b = parse_ramblocks("              Block Name    PSize              Offset               Used              Total\n                    ram0    4 KiB  0x0000000000000000 0x0000000010000000 0x0000000010000000\n   0000:00:02.0/vga.vram    4 KiB  0x0000000010080000 0x0000000001000000 0x0000000001000000\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].used, 0x1000_0000);
        assert_eq!(b[1].name, "0000:00:02.0/vga.vram");
        let m = parse_rw_mappings("7f0000000000-7f0010000000 rw-p 00000000 00:00 0 \n7f0010000000-7f0010001000 r--p 00000000 00:00 0 \n7f2000000000-7f2010000000 rw-s 00000000 00:1a 12 /dev/shm/x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].len, 0x1000_0000);
        assert_eq!(m[0].path, "");
        assert_eq!(m[1].path, "/dev/shm/x");
    }

    #[test]
    fn chardev_xp_registers() {
        let c = "serial0: filename=file\ngdb: filename=disconnected:unix:/tmp/g.sock,server=on\n";
        assert_eq!(
            parse_gdb_chardev(c),
            Some((GdbAddress::Unix("/tmp/g.sock".into()), false))
        );
        assert_eq!(
            parse_gdb_chardev("gdb: filename=tcp:127.0.0.1:1234,server=on <-> 127.0.0.1:5"),
            Some((GdbAddress::Tcp("127.0.0.1:1234".into()), true))
        );
        assert_eq!(parse_gdb_chardev("serial0: filename=file"), None);
        assert_eq!(
            parse_xp("0000000000100000: 0x0000000000000001 0xffffffff00000000\n"),
            vec![1, 0xffff_ffff_0000_0000]
        );
        let blocks = split_cpu_blocks("CPU#0\nCR0=80050033 CR2=00 CR3=0000000001078000 CR4=00751ef0\nEFER=0000000000000d01\nCPU#1\nCR3=2\n");
        assert_eq!(blocks.len(), 2);
        assert_eq!(hmp_register(&blocks[0].1, "CR3"), Some(0x1078000));
        assert_eq!(hmp_register(&blocks[0].1, "EFER"), Some(0xd01));
        assert_eq!(hmp_register(&blocks[1].1, "CR3"), Some(2));
        assert_eq!(hmp_register("XCR0=5 CR0=7", "CR0"), Some(7));
    }
}
