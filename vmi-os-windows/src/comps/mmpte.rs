//! Windows' software PTE formats (`_MMPTE_TRANSITION`, `_MMPTE_PROTOTYPE`, `_MMPTE_SOFTWARE`):
//! what a PTE whose present bit is clear means. The page-frame field widths differ by build
//! (36 bits up to 19041, 40 on 22000), and since about 1909 the high bits above the transition
//! PFN carry flags that must be masked (volatility3 #475).

use vmi_core::Profile;

use super::{bits, Bits};

/// The software PTE layouts of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PteFormats {
    /// `_MMPTE_TRANSITION.PageFrameNumber`.
    pub transition_pfn: Bits,
    /// `_MMPTE_HARDWARE.PageFrameNumber`.
    pub hardware_pfn: Bits,
    /// `_MMPTE_PROTOTYPE.ProtoAddress` (a sign-extended kernel VA).
    pub proto_address: Bits,
    /// `_MMPTE_SOFTWARE.PageFileHigh`.
    pub page_file_high: Bits,
}

/// What a PTE says about its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PteState {
    /// Present: this frame.
    Valid(u64),
    /// Not present but resident (standby or modified list): this frame.
    Transition(u64),
    /// Refers to a prototype PTE at this kernel address.
    Prototype(u64),
    /// In the page file.
    PageFile,
    /// Nothing there yet (demand zero, or not committed).
    Zero,
}

impl PteState {
    /// A word for messages.
    pub fn name(&self) -> &'static str {
        match self {
            PteState::Valid(_) => "valid",
            PteState::Transition(_) => "transition",
            PteState::Prototype(_) => "prototype",
            PteState::PageFile => "in the page file",
            PteState::Zero => "demand zero or not committed",
        }
    }
}

/// `_MMPTE_PROTOTYPE.ProtoAddress` value meaning "look at the VAD" (0xFFFFFFFF0000 in 48 bits).
const PROTO_IN_VAD: u64 = 0xFFFF_FFFF_0000;

impl PteFormats {
    /// The formats of `p`, or the 19041 layout where the table lacks them.
    pub fn resolve(p: &Profile) -> Self {
        let or = |ty: &str, f: &str, d: Bits| bits(p, ty, f).unwrap_or(d);
        Self {
            transition_pfn: or(
                "_MMPTE_TRANSITION",
                "PageFrameNumber",
                Bits {
                    position: 12,
                    length: 36,
                },
            ),
            hardware_pfn: or(
                "_MMPTE_HARDWARE",
                "PageFrameNumber",
                Bits {
                    position: 12,
                    length: 36,
                },
            ),
            proto_address: or(
                "_MMPTE_PROTOTYPE",
                "ProtoAddress",
                Bits {
                    position: 16,
                    length: 48,
                },
            ),
            page_file_high: or(
                "_MMPTE_SOFTWARE",
                "PageFileHigh",
                Bits {
                    position: 32,
                    length: 32,
                },
            ),
        }
    }

    /// What `pte` (a last-level entry) says.
    pub fn state(&self, pte: u64) -> PteState {
        const PROTOTYPE: u64 = 1 << 10;
        const TRANSITION: u64 = 1 << 11;
        if pte & 1 == 1 {
            PteState::Valid(self.hardware_pfn.get(pte))
        } else if pte & PROTOTYPE != 0 {
            let raw = self.proto_address.get(pte);
            if raw == PROTO_IN_VAD {
                return PteState::PageFile;
            }
            // Sign-extend the 48-bit kernel address.
            let shift = 64 - self.proto_address.length.min(64);
            let va = (raw << shift) as i64 >> shift;
            PteState::Prototype(va as u64)
        } else if pte & TRANSITION != 0 {
            PteState::Transition(self.transition_pfn.get(pte))
        } else if self.page_file_high.get(pte) != 0 {
            PteState::PageFile
        } else {
            PteState::Zero
        }
    }
}

/// A transition PFN cut to the width of physical memory (`memory_end`, one past the last
/// byte) when it points beyond it: since about 1909 Windows keeps flags in the high bits of
/// the transition PFN field (volatility3 #475, libvmi #1054).
pub fn clamp_pfn(pfn: u64, memory_end: u64) -> u64 {
    if pfn.checked_mul(4096).is_some_and(|pa| pa < memory_end) {
        return pfn;
    }
    let bits = 64 - memory_end.saturating_sub(1).leading_zeros();
    let pfn_bits = bits.saturating_sub(12);
    if pfn_bits >= 64 {
        pfn
    } else {
        pfn & ((1u64 << pfn_bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats(pfn_bits: u32) -> PteFormats {
        PteFormats {
            transition_pfn: Bits {
                position: 12,
                length: pfn_bits,
            },
            hardware_pfn: Bits {
                position: 12,
                length: pfn_bits,
            },
            proto_address: Bits {
                position: 16,
                length: 48,
            },
            page_file_high: Bits {
                position: 32,
                length: 32,
            },
        }
    }

    #[test]
    fn decodes_the_states() {
        let f = formats(36);
        // volatility3 #475: the high bits of a transition PTE's PFN field carry flags; the
        // field is read whole here and cut to the physical address width by the reader.
        assert_eq!(
            f.state(0x0000_2000_6053_3860),
            PteState::Transition(0x2_0006_0533)
        );
        assert_eq!(clamp_pfn(0x2_0006_0533, 1 << 31), 0x60533);
        assert_eq!(clamp_pfn(0x60533, 1 << 31), 0x60533);
        assert_eq!(f.state(0x8000_0000_1234_5867), PteState::Valid(0x12345));
        assert_eq!(
            f.state(0xA001_2345_0000_0400),
            PteState::Prototype(0xFFFF_A001_2345_0000)
        );
        assert_eq!(f.state(0x0000_0123_0000_0080), PteState::PageFile);
        assert_eq!(f.state(0x80), PteState::Zero);
        assert_eq!(f.state(0xFFFF_FFFF_0000_0400), PteState::PageFile);
    }
}
