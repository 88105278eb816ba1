//! Bounds-checked little-endian reads at offsets of untrusted bytes, and guest alignment.

/// The alignment of every kallsyms table on 64-bit kernels (`ALGN` is `.balign 8`).
pub(crate) const TABLE_ALIGN: u64 = 8;

/// Reads a little-endian `u16` at `off`, or `None` past the end.
#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Reads a little-endian `u32` at `off`, or `None` past the end.
#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a little-endian `i32` at `off`, or `None` past the end.
#[inline]
pub(crate) fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    u32_at(b, off).map(|v| v as i32)
}

/// Reads a little-endian `u64` at `off`, or `None` past the end.
#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_le_bytes(w))
}

/// Offsets into a byte slice that starts at guest address `base`, aligned as the guest sees
/// them: the tables are aligned in guest memory, not in the slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Aligner {
    /// `base % TABLE_ALIGN`.
    skew: u64,
}

impl Aligner {
    /// An aligner for a slice starting at guest address `base`.
    pub(crate) fn new(base: u64) -> Self {
        Self {
            skew: base % TABLE_ALIGN,
        }
    }

    /// Whether `base + off` is aligned.
    #[inline]
    pub(crate) fn is_aligned(self, off: usize) -> bool {
        (self.skew + off as u64 % TABLE_ALIGN) % TABLE_ALIGN == 0
    }

    /// The first offset `>= off` whose guest address is aligned.
    #[inline]
    pub(crate) fn align_up(self, off: usize) -> Option<usize> {
        let rem = (self.skew + off as u64 % TABLE_ALIGN) % TABLE_ALIGN;
        let pad = (TABLE_ALIGN - rem) % TABLE_ALIGN;
        off.checked_add(pad as usize)
    }

    /// The last offset `<= off` whose guest address is aligned.
    #[inline]
    pub(crate) fn align_down(self, off: usize) -> usize {
        let rem = (self.skew + off as u64 % TABLE_ALIGN) % TABLE_ALIGN;
        off.saturating_sub(rem as usize)
    }

    /// The first aligned offset (`0..TABLE_ALIGN`).
    #[inline]
    pub(crate) fn first(self) -> usize {
        ((TABLE_ALIGN - self.skew) % TABLE_ALIGN) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u16_at(&b, 8), None);
        assert_eq!(u32_at(&b, 5), Some(0x0908_0706));
        assert_eq!(u32_at(&b, 6), None);
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(u32_at(&b, usize::MAX - 1), None);
        assert_eq!(i32_at(&[0xff; 4], 0), Some(-1));
    }

    #[test]
    fn alignment_follows_the_guest_address() {
        let a = Aligner::new(0x1003);
        assert_eq!(a.first(), 5);
        assert!(a.is_aligned(5));
        assert!(!a.is_aligned(8));
        assert_eq!(a.align_up(6), Some(13));
        assert_eq!(a.align_up(13), Some(13));
        assert_eq!(a.align_down(12), 5);
        assert_eq!(a.align_down(13), 13);
        let z = Aligner::new(0);
        assert_eq!(z.first(), 0);
        assert_eq!(z.align_up(9), Some(16));
        assert_eq!(z.align_up(usize::MAX), None);
    }
}
