//! The kernel debugger data block (`KdDebuggerDataBlock`, "KDBG"): plain or, since Windows 8,
//! encoded with `KiWaitNever`/`KiWaitAlways` when `KdpDataBlockEncoded` is set.

use vmi_core::{Profile, Va, VirtualMemory};

/// What the block says about the kernel, read (and decoded) from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kdbg {
    /// Where the block is.
    pub va: Va,
    /// Whether it was encoded in memory.
    pub encoded: bool,
    /// `KernBase` (+0x18).
    pub kern_base: Va,
    /// `PsLoadedModuleList` (+0x48).
    pub ps_loaded_module_list: Va,
    /// `PsActiveProcessHead` (+0x50).
    pub ps_active_process_head: Va,
}

/// Words decoded: enough for the header and the list heads.
const WORDS: usize = 12;

/// Decodes one word of an encoded block: the inverse of what the kernel does at boot
/// (`KdCopyDataBlock`): xor with KiWaitNever, rotate left by its low byte, xor with the
/// block's own address, swap bytes, xor with KiWaitAlways.
pub fn decode_word(encoded: u64, wait_never: u64, wait_always: u64, block: u64) -> u64 {
    let v = (encoded ^ wait_never).rotate_left((wait_never & 0xFF) as u32);
    (v ^ block).swap_bytes() ^ wait_always
}

/// The inverse of [`decode_word`] (what a synthetic guest stores).
pub fn encode_word(plain: u64, wait_never: u64, wait_always: u64, block: u64) -> u64 {
    let v = (plain ^ wait_always).swap_bytes() ^ block;
    v.rotate_right((wait_never & 0xFF) as u32) ^ wait_never
}

/// Reads the block of the kernel at `base` (symbols of `profile` are RVAs), decoding it when
/// its tag is not "KDBG" and `KdpDataBlockEncoded` is set.
pub fn read(vm: &VirtualMemory<'_>, base: Va, profile: &Profile) -> Result<Kdbg, String> {
    let at = |name: &str| -> Result<Va, String> {
        let rva = profile.symbol_address(name).map_err(|e| e.to_string())?;
        base.checked_add(rva)
            .ok_or_else(|| format!("{name} overflows"))
    };
    let va = at("KdDebuggerDataBlock")?;
    let mut words = [0u64; WORDS];
    let mut bytes = [0u8; WORDS * 8];
    vm.read_exact(va, &mut bytes).map_err(|e| e.to_string())?;
    for (w, c) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    }
    let tag_ok = |w: &[u64; WORDS]| w[2] & 0xFFFF_FFFF == u64::from(u32::from_le_bytes(*b"KDBG"));
    let mut encoded = false;
    if !tag_ok(&words) {
        let flag_va = at("KdpDataBlockEncoded")?;
        let mut flag = [0u8; 1];
        vm.read_exact(flag_va, &mut flag)
            .map_err(|e| e.to_string())?;
        if flag[0] == 0 {
            return Err("no KDBG tag and KdpDataBlockEncoded is 0".into());
        }
        let never = vm.read_u64(at("KiWaitNever")?).map_err(|e| e.to_string())?;
        let always = vm
            .read_u64(at("KiWaitAlways")?)
            .map_err(|e| e.to_string())?;
        for w in &mut words {
            *w = decode_word(*w, never, always, flag_va.raw());
        }
        if !tag_ok(&words) {
            return Err("the decoded block has no KDBG tag".into());
        }
        encoded = true;
    }
    Ok(Kdbg {
        va,
        encoded,
        kern_base: Va::new(words[3]),
        ps_loaded_module_list: Va::new(words[9]),
        ps_active_process_head: Va::new(words[10]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_inverts_encoding() {
        let (never, always, block) = (
            0x1234_5678_9ABC_DEF1,
            0x0FED_CBA9_8765_4321,
            0xFFFF_F805_1234_5678,
        );
        for plain in [
            0u64,
            1,
            0x4742_444B_0000_0340,
            u64::MAX,
            0xFFFF_F805_5160_0000,
        ] {
            let enc = encode_word(plain, never, always, block);
            assert_eq!(decode_word(enc, never, always, block), plain);
        }
    }
}
