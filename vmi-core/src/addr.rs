//! Guest address newtypes.
//!
//! Guest pointers are attacker-controlled data, so these types deliberately have no arithmetic
//! operators: every offset is a `checked_*` call and the caller decides what overflow means.

use std::fmt;

/// The size of a page or a large page mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, every paging mode's smallest page.
    Size4K,
    /// 2 MiB, a large page in PAE and IA-32e paging.
    Size2M,
    /// 4 MiB, a large page in legacy 32-bit paging with PSE.
    Size4M,
    /// 1 GiB, a huge page in IA-32e paging.
    Size1G,
}

impl PageSize {
    /// The page size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// log2 of the page size.
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size4M => 22,
            PageSize::Size1G => 30,
        }
    }

    /// Mask of the offset bits inside a page of this size.
    pub const fn offset_mask(self) -> u64 {
        self.bytes() - 1
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Size4K => "4KiB",
            PageSize::Size2M => "2MiB",
            PageSize::Size4M => "4MiB",
            PageSize::Size1G => "1GiB",
        })
    }
}

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + offset`, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - offset`, or `None` on underflow.
            pub const fn checked_sub(self, offset: u64) -> Option<Self> {
                match self.0.checked_sub(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The distance from `base` up to `self`, or `None` if `self < base`.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// The offset of this address inside its page of `size`.
            pub const fn page_offset(self, size: PageSize) -> u64 {
                self.0 & size.offset_mask()
            }

            /// This address rounded down to a `size` boundary.
            pub const fn align_down(self, size: PageSize) -> Self {
                Self(self.0 & !size.offset_mask())
            }

            /// Whether this address lies on a `size` boundary.
            pub const fn is_aligned(self, size: PageSize) -> bool {
                self.page_offset(size) == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A guest-physical address.
    Pa
);
address_type!(
    /// A guest-virtual address.
    Va
);

/// A guest frame number: a guest-physical address divided by 4 KiB.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Gfn(u64);

impl Gfn {
    /// Wraps a raw frame number.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw frame number.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The frame that holds `pa`.
    pub const fn from_pa(pa: Pa) -> Self {
        Self(pa.raw() >> PageSize::Size4K.shift())
    }

    /// The first physical address of this frame, or `None` if it does not fit in 64 bits.
    pub const fn to_pa(self) -> Option<Pa> {
        if self.0 > (u64::MAX >> PageSize::Size4K.shift()) {
            None
        } else {
            Some(Pa::new(self.0 << PageSize::Size4K.shift()))
        }
    }
}

impl fmt::Debug for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfn({:#x})", self.0)
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Va::new(u64::MAX).checked_add(1), None);
        assert_eq!(Va::new(0).checked_sub(1), None);
        assert_eq!(Pa::new(0x1000).checked_add(0x10), Some(Pa::new(0x1010)));
        assert_eq!(Pa::new(0x1010).offset_from(Pa::new(0x1000)), Some(0x10));
        assert_eq!(Pa::new(0x1000).offset_from(Pa::new(0x1010)), None);
    }

    #[test]
    fn page_helpers() {
        let va = Va::new(0xffff_8000_0020_1234);
        assert_eq!(va.page_offset(PageSize::Size4K), 0x234);
        assert_eq!(va.page_offset(PageSize::Size2M), 0x1234);
        assert_eq!(
            va.align_down(PageSize::Size2M),
            Va::new(0xffff_8000_0020_0000)
        );
        assert!(Va::new(0x4000_0000).is_aligned(PageSize::Size1G));
        assert_eq!(Gfn::from_pa(Pa::new(0x12345)), Gfn::new(0x12));
        assert_eq!(Gfn::new(0x12).to_pa(), Some(Pa::new(0x12000)));
        assert_eq!(Gfn::new(u64::MAX).to_pa(), None);
        assert_eq!(format!("{}", Va::new(0xabc)), "0xabc");
        assert_eq!(format!("{:?}", Pa::new(0xabc)), "Pa(0xabc)");
    }
}
