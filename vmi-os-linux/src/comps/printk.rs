//! The lockless printk ring buffer (5.10+, `kernel/printk/printk_ringbuffer.[ch]`): the kernel
//! log.
//!
//! `struct printk_ringbuffer` has a descriptor ring (`desc_ring`: `count_bits`, `descs[]`,
//! `infos[]`, `head_id`, `tail_id`) and a text data ring (`text_data_ring`: `size_bits`,
//! `data[]`). Records live from descriptor id `tail_id` to `head_id`; id `n` is at index
//! `n mod 2^count_bits` of both arrays. A descriptor's `state_var` holds its id in the low
//! 62 bits and its state in the top two (`desc_reserved` 0, `desc_committed` 1,
//! `desc_finalized` 2, `desc_reusable` 3); only committed and finalized records are read, and
//! only if the id matches (else the slot was reused: `desc_miss`). The record's text is
//! found from `text_blk_lpos {begin, next}` as `get_data` does: a data-less block has both
//! low bits set; a regular block is `[begin, next)` in one wrap; a block that wraps keeps its
//! data at the start of the ring. Each data block starts with the descriptor id, which is
//! checked, and `info->text_len` bytes of text follow.
//!
//! Kernels where `printk_info` is embedded in `prb_desc` (the 5.10 development series) are
//! read too: the layout is picked by whether `prb_desc_ring.infos` exists.
//!
//! Every count is bounded: `count_bits` and `size_bits` are checked against what the kernel
//! can allocate (`LOG_BUF_LEN_MAX` is 2 GiB: at most 31 and 26 bits), more records than the
//! ring holds are clamped, and at most [`MAX_RECORD_WARNINGS`] per-record warnings are kept.
//! What is kept is bounded too, whatever the ring claims: at most [`MAX_RECORDS`] records and
//! [`MAX_TEXT_BYTES`] bytes of text, after scanning at most [`MAX_DESCRIPTORS`] descriptors.
//! The ring is read from the newest record back, so a capped log is its newest part (as the
//! kernel itself drops the oldest records), with a warning saying how much was left.

use serde::Serialize;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{unexpected_layout, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::partial::Partial;

/// The variable pointing at the kernel's ring buffer: `struct printk_ringbuffer *prb`
/// (kernel/printk/printk.c). BTF has no type for variables, so the type is declared here.
pub const PRB_SYMBOL: &str = "prb";

/// The most descriptor bits accepted: `LOG_BUF_LEN_MAX` (2 GiB) over `PRB_AVGBITS` (5).
pub const MAX_COUNT_BITS: u64 = 26;
/// The most text ring bits accepted: `LOG_BUF_LEN_MAX` is 2^31.
pub const MAX_SIZE_BITS: u64 = 31;
/// The fewest text ring bits accepted: the ring must hold at least one block id.
pub const MIN_SIZE_BITS: u64 = 3;
/// Per-record warnings kept; further problems are counted in one last warning.
pub const MAX_RECORD_WARNINGS: usize = 32;
/// The most records kept. A real ring of the default size (Debian: `CONFIG_LOG_BUF_SHIFT` 18,
/// 256 KiB) holds 8192 descriptors; even `log_buf_len=32M` holds a million only if every
/// record is 32 bytes. A flood of millions of empty records stops here: about 13 MiB of
/// records.
pub const MAX_RECORDS: usize = 1 << 18;
/// The most bytes of text kept, over all records.
pub const MAX_TEXT_BYTES: usize = 32 << 20;
/// The most descriptors looked at, readable or not: a ring of 2^26 descriptors that are not
/// records ends here instead of being read to its end.
pub const MAX_DESCRIPTORS: u64 = 1 << 22;
/// `printk_info.text_len` is a `u16`: no record is longer.
const MAX_TEXT_LEN: u64 = u16::MAX as u64;

/// `DESC_FLAGS_SHIFT`: the state is in the top two bits of `state_var`.
const DESC_FLAGS_SHIFT: u32 = 62;
/// `DESC_ID_MASK`.
const DESC_ID_MASK: u64 = !(3u64 << DESC_FLAGS_SHIFT);
/// `desc_committed` and `desc_finalized`: the readable states.
const DESC_COMMITTED: u64 = 1;
const DESC_FINALIZED: u64 = 2;
/// `NO_LPOS`: a data-less block of an empty record.
const NO_LPOS: u64 = 0x3;
/// Size of the id heading every data block.
const BLOCK_ID_SIZE: u64 = 8;
/// Descriptors read per bulk read.
const CHUNK: u64 = 128;

/// One kernel log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRecord {
    /// Sequence number (0 for the first message since boot).
    pub seq: u64,
    /// Time since boot in nanoseconds (`local_clock`), as the `[    0.000000]` prefix shows.
    pub timestamp_ns: u64,
    /// Log level, 0 (`KERN_EMERG`) to 7 (`KERN_DEBUG`).
    pub level: u8,
    /// Syslog facility (0 for the kernel).
    pub facility: u8,
    /// The message, without level or timestamp prefix; multi-line messages keep their
    /// newlines.
    pub text: String,
}

/// Where the ring buffer's fields are.
#[derive(Debug, Clone)]
pub struct PrintkOffsets {
    rb_span: usize,
    count_bits: Scalar,
    descs: Scalar,
    infos: Option<Scalar>,
    head_id: Scalar,
    tail_id: Scalar,
    size_bits: Scalar,
    data: Scalar,
    desc_size: u64,
    state_var: Scalar,
    blk_begin: Scalar,
    blk_next: Scalar,
    /// `prb_desc.info`, when the info is embedded in the descriptor.
    info_in_desc: Option<u64>,
    info_size: u64,
    seq: Scalar,
    ts_nsec: Scalar,
    text_len: Scalar,
    level: Scalar,
    facility: Scalar,
}

fn nested(p: &Profile, ty: &str, outer: &str, inner: &str) -> Result<Scalar, ProfileError> {
    Scalar::resolve_nested(p, ty, outer, inner)
}

impl PrintkOffsets {
    /// Resolves the layout from the profile.
    pub fn resolve(p: &Profile) -> Result<PrintkOffsets, ProfileError> {
        const RB: &str = "printk_ringbuffer";
        const DR: &str = "desc_ring";
        let count_bits = nested(p, RB, DR, "count_bits")?;
        let descs = nested(p, RB, DR, "descs")?;
        let infos = nested(p, RB, DR, "infos").ok();
        let head_id = nested(p, RB, DR, "head_id")?;
        let tail_id = nested(p, RB, DR, "tail_id")?;
        let size_bits = nested(p, RB, "text_data_ring", "size_bits")?;
        let data = nested(p, RB, "text_data_ring", "data")?;
        let rb_end = [count_bits, descs, head_id, tail_id, size_bits, data]
            .iter()
            .chain(infos.iter())
            .map(Scalar::end)
            .max()
            .unwrap_or(0);
        let desc_size = p.struct_size("prb_desc")?;
        let info_in_desc = match infos {
            Some(_) => None,
            None => Some(p.field_offset("prb_desc", "info")?),
        };
        let info_size = p.struct_size("printk_info")?;
        let off = PrintkOffsets {
            rb_span: usize::try_from(rb_end)
                .ok()
                .filter(|&e| e <= 4096)
                .ok_or_else(|| unexpected_layout(RB, "<span>", "beyond 4 KiB"))?,
            count_bits,
            descs,
            infos,
            head_id,
            tail_id,
            size_bits,
            data,
            desc_size,
            state_var: Scalar::resolve(p, "prb_desc", "state_var")?,
            blk_begin: nested(p, "prb_desc", "text_blk_lpos", "begin")?,
            blk_next: nested(p, "prb_desc", "text_blk_lpos", "next")?,
            info_in_desc,
            info_size,
            seq: Scalar::resolve(p, "printk_info", "seq")?,
            ts_nsec: Scalar::resolve(p, "printk_info", "ts_nsec")?,
            text_len: Scalar::resolve(p, "printk_info", "text_len")?,
            level: Scalar::resolve(p, "printk_info", "level")?,
            facility: Scalar::resolve(p, "printk_info", "facility")?,
        };
        let info_end = [off.seq, off.ts_nsec, off.text_len, off.level, off.facility]
            .iter()
            .map(Scalar::end)
            .max()
            .unwrap_or(0);
        let desc_end = [off.state_var, off.blk_begin, off.blk_next]
            .iter()
            .map(Scalar::end)
            .max()
            .unwrap_or(0)
            .max(info_in_desc.map_or(0, |o| o.saturating_add(info_size)));
        if info_size == 0 || info_size > 4096 || info_end > info_size {
            return Err(unexpected_layout(
                "printk_info",
                "<size>",
                "fields outside it",
            ));
        }
        if desc_size == 0 || desc_size > 4096 || desc_end > desc_size {
            return Err(unexpected_layout("prb_desc", "<size>", "fields outside it"));
        }
        Ok(off)
    }
}

/// The header of a ring buffer, read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ringbuffer {
    /// Where the `printk_ringbuffer` is.
    pub addr: Va,
    /// `desc_ring.count_bits`.
    pub count_bits: u32,
    /// `desc_ring.descs`.
    pub descs: Va,
    /// `desc_ring.infos` (or `None` when embedded in the descriptors).
    pub infos: Option<Va>,
    /// `desc_ring.head_id`: the newest descriptor.
    pub head_id: u64,
    /// `desc_ring.tail_id`: the oldest descriptor.
    pub tail_id: u64,
    /// `text_data_ring.size_bits`.
    pub size_bits: u32,
    /// `text_data_ring.data`.
    pub data: Va,
}

impl Ringbuffer {
    /// Reads the header of the ring buffer at `addr`. Sizes beyond what the kernel can
    /// allocate are an error: nothing could be read sensibly from such a ring.
    pub fn read(
        mem: &VirtualMemory<'_>,
        offsets: &PrintkOffsets,
        addr: Va,
    ) -> Result<Ringbuffer, LinuxError> {
        let b = StructBuf::read(mem, "printk_ringbuffer", addr, offsets.rb_span)?;
        let count_bits = b.get(offsets.count_bits)?;
        let size_bits = b.get(offsets.size_bits)?;
        if count_bits > MAX_COUNT_BITS {
            return Err(b.corrupt(format!(
                "desc_ring.count_bits is {count_bits}, above the kernel's maximum of {MAX_COUNT_BITS}"
            )));
        }
        if !(MIN_SIZE_BITS..=MAX_SIZE_BITS).contains(&size_bits) {
            return Err(b.corrupt(format!(
                "text_data_ring.size_bits is {size_bits}, outside {MIN_SIZE_BITS}..={MAX_SIZE_BITS}"
            )));
        }
        Ok(Ringbuffer {
            addr,
            count_bits: count_bits as u32,
            descs: b.va(offsets.descs)?,
            infos: match offsets.infos {
                Some(s) => Some(b.va(s)?),
                None => None,
            },
            head_id: b.get(offsets.head_id)? & DESC_ID_MASK,
            tail_id: b.get(offsets.tail_id)? & DESC_ID_MASK,
            size_bits: size_bits as u32,
            data: b.va(offsets.data)?,
        })
    }

    fn count(&self) -> u64 {
        1u64 << self.count_bits
    }

    fn data_size(&self) -> u64 {
        1u64 << self.size_bits
    }

    /// `get_data`: where the text of a block is in the data ring (byte index of the block's
    /// id) and how many bytes follow the id, or why the block description is illegal.
    /// `Ok(None)` is a data-less block without text.
    fn locate(&self, begin: u64, next: u64) -> Result<Option<(u64, u64)>, String> {
        if begin & 1 == 1 && next & 1 == 1 {
            return if begin == NO_LPOS && next == NO_LPOS {
                Ok(Some((0, 0)))
            } else {
                Ok(None) // FAILED_LPOS: the text was lost when it was written.
            };
        }
        let size = self.data_size();
        let wraps = |lpos: u64| lpos >> self.size_bits;
        let index = |lpos: u64| lpos & (size - 1);
        let (at, len) = if wraps(begin) == wraps(next) && begin < next {
            (index(begin), next - begin)
        } else if wraps(begin.wrapping_add(size)) == wraps(next) {
            (0, index(next))
        } else {
            return Err(format!("illegal block {begin:#x}..{next:#x}"));
        };
        if begin % BLOCK_ID_SIZE != 0 || next % BLOCK_ID_SIZE != 0 {
            return Err(format!("block {begin:#x}..{next:#x} is not 8-byte aligned"));
        }
        if len < BLOCK_ID_SIZE || len > size || at.saturating_add(len) > size {
            return Err(format!(
                "block {begin:#x}..{next:#x} has impossible size {len}"
            ));
        }
        Ok(Some((at, len - BLOCK_ID_SIZE)))
    }
}

/// Per-record problems, capped.
struct Warnings {
    out: Vec<LinuxError>,
    dropped: usize,
}

impl Warnings {
    fn push(&mut self, e: LinuxError) {
        if self.out.len() < MAX_RECORD_WARNINGS {
            self.out.push(e);
        } else {
            self.dropped += 1;
        }
    }
}

/// Reads every readable record of the ring buffer at `addr`, oldest first, within the bounds
/// on what is kept ([`MAX_RECORDS`], [`MAX_TEXT_BYTES`], [`MAX_DESCRIPTORS`]): beyond them, the
/// newest records are kept and a warning says how many descriptors were not read.
pub fn records(
    mem: &VirtualMemory<'_>,
    offsets: &PrintkOffsets,
    addr: Va,
) -> Result<Partial<LogRecord>, LinuxError> {
    let rb = Ringbuffer::read(mem, offsets, addr)?;
    let count = rb.count();
    let mut header = Vec::new();
    let mut warnings = Warnings {
        out: Vec::new(),
        dropped: 0,
    };
    let mut span = rb.head_id.wrapping_sub(rb.tail_id) & DESC_ID_MASK;
    if span >= count {
        header.push(LinuxError::Corrupt {
            what: "printk_ringbuffer",
            at: addr,
            reason: format!(
                "tail id {:#x} is more than {count} descriptors behind head id {:#x}; reading \
                 the newest {count}",
                rb.tail_id, rb.head_id
            ),
        });
        span = count - 1;
    }
    let first = rb.head_id.wrapping_sub(span) & DESC_ID_MASK;
    let total = span + 1;
    // Newest first, reversed at the end: when a bound cuts the log, the newest part is kept.
    let mut items =
        Vec::with_capacity(usize::try_from(total).map_or(MAX_RECORDS, |t| t.min(MAX_RECORDS)));
    let mut text_bytes = 0usize;
    let mut descs = Vec::new();
    let mut infos = Vec::new();
    // Descriptors not yet looked at: ids `first .. first + remaining`.
    let mut remaining = total;
    let mut full = None;
    while remaining > 0 {
        let scanned = total - remaining;
        if scanned >= MAX_DESCRIPTORS {
            full = Some(format!("{MAX_DESCRIPTORS} descriptors"));
            break;
        }
        let last = first.wrapping_add(remaining - 1) & DESC_ID_MASK;
        let idx_last = last & (count - 1);
        // A chunk ends at `last` and never wraps around the end of the arrays.
        let n = CHUNK.min(remaining).min(idx_last + 1);
        let idx0 = idx_last + 1 - n;
        let id0 = last.wrapping_sub(n - 1) & DESC_ID_MASK;
        match read_chunk(mem, offsets, &rb, idx0, n, &mut descs, &mut infos) {
            Ok(()) => {
                for j in (0..n).rev() {
                    let id = id0.wrapping_add(j) & DESC_ID_MASK;
                    match record(mem, offsets, &rb, id, j, &descs, &infos) {
                        Ok(Some(r)) => {
                            if text_bytes.saturating_add(r.text.len()) > MAX_TEXT_BYTES {
                                full = Some(format!("{MAX_TEXT_BYTES} bytes of text"));
                                // This record and the descriptors older than it are not kept.
                                remaining = j + 1 + (remaining - n);
                                break;
                            }
                            text_bytes += r.text.len();
                            items.push(r);
                            if items.len() >= MAX_RECORDS {
                                full = Some(format!("{MAX_RECORDS} records"));
                                remaining = j + (remaining - n);
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => warnings.push(e),
                    }
                }
            }
            Err(e) => warnings.push(e),
        }
        if full.is_some() {
            break;
        }
        remaining -= n;
    }
    items.reverse();
    warnings.out.reverse();
    if warnings.dropped > 0 {
        warnings.out.push(LinuxError::Corrupt {
            what: "printk_ringbuffer",
            at: addr,
            reason: format!("{} more records could not be read", warnings.dropped),
        });
    }
    if let Some(bound) = full {
        header.push(LinuxError::Corrupt {
            what: "printk_ringbuffer",
            at: addr,
            reason: format!(
                "{remaining} older descriptors of {total} not kept: the newest {} records \
                 ({text_bytes} bytes of text) are, the bound is {bound}",
                items.len()
            ),
        });
    }
    header.extend(warnings.out);
    Ok(Partial {
        items,
        warnings: header,
    })
}

/// Reads descriptors (and infos) `idx0..idx0 + n` into the buffers.
fn read_chunk(
    mem: &VirtualMemory<'_>,
    offsets: &PrintkOffsets,
    rb: &Ringbuffer,
    idx0: u64,
    n: u64,
    descs: &mut Vec<u8>,
    infos: &mut Vec<u8>,
) -> Result<(), LinuxError> {
    let at = |base: Va, stride: u64| {
        idx0.checked_mul(stride)
            .and_then(|o| base.checked_add(o))
            .ok_or(LinuxError::Corrupt {
                what: "printk_ringbuffer",
                at: rb.addr,
                reason: format!("array at {base:#x} overflows the address space"),
            })
    };
    // n <= CHUNK and the strides are at most 4 KiB: the products fit.
    descs.resize((n * offsets.desc_size) as usize, 0);
    mem.read_exact(at(rb.descs, offsets.desc_size)?, descs)?;
    if let Some(base) = rb.infos {
        infos.resize((n * offsets.info_size) as usize, 0);
        mem.read_exact(at(base, offsets.info_size)?, infos)?;
    }
    Ok(())
}

/// Decodes record `id` (the `j`th of the chunk), or `None` for a descriptor that holds no
/// readable record (reserved, reusable, or its text lost).
fn record(
    mem: &VirtualMemory<'_>,
    offsets: &PrintkOffsets,
    rb: &Ringbuffer,
    id: u64,
    j: u64,
    descs: &[u8],
    infos: &[u8],
) -> Result<Option<LogRecord>, LinuxError> {
    let corrupt = |reason: String| LinuxError::Corrupt {
        what: "printk record",
        at: rb.addr,
        reason: format!("descriptor id {id:#x}: {reason}"),
    };
    // j < CHUNK and strides are at most 4 KiB (checked when resolved): no overflow.
    fn slice(buf: &[u8], j: u64, stride: u64) -> Option<&[u8]> {
        let s = (j * stride) as usize;
        buf.get(s..s + stride as usize)
    }
    let outside = || corrupt("outside the bytes read".into());
    let desc = slice(descs, j, offsets.desc_size).ok_or_else(outside)?;
    let get = |buf: &[u8], s: Scalar| s.get(buf).ok_or_else(|| corrupt("field outside".into()));
    let sv = get(desc, offsets.state_var)?;
    let state = sv >> DESC_FLAGS_SHIFT;
    if state != DESC_COMMITTED && state != DESC_FINALIZED {
        return Ok(None);
    }
    if sv & DESC_ID_MASK != id {
        return Err(corrupt(format!(
            "slot holds id {:#x} (overwritten)",
            sv & DESC_ID_MASK
        )));
    }
    let info = match offsets.info_in_desc {
        Some(o) => desc.get(o as usize..(o + offsets.info_size) as usize),
        None => slice(infos, j, offsets.info_size),
    }
    .ok_or_else(outside)?;
    let seq = get(info, offsets.seq)?;
    if (seq ^ id) & (rb.count() - 1) != 0 {
        return Err(corrupt(format!(
            "sequence number {seq} is not at this index"
        )));
    }
    let begin = get(desc, offsets.blk_begin)?;
    let next = get(desc, offsets.blk_next)?;
    let Some((at, avail)) = rb.locate(begin, next).map_err(corrupt)? else {
        return Ok(None);
    };
    let text_len = get(info, offsets.text_len)?;
    if text_len > MAX_TEXT_LEN {
        return Err(corrupt(format!(
            "text_len {text_len} is beyond the u16 the kernel stores"
        )));
    }
    if text_len > avail {
        return Err(corrupt(format!(
            "text_len {text_len} exceeds its data block of {avail} bytes"
        )));
    }
    let text = if avail == 0 {
        String::new()
    } else {
        // The id heading the block, then the text: text_len is at most 65535.
        let mut block = vec![0u8; (BLOCK_ID_SIZE + text_len) as usize];
        let block_at = rb
            .data
            .checked_add(at)
            .ok_or_else(|| corrupt("data block address overflows".into()))?;
        mem.read_exact(block_at, &mut block)?;
        let (id_bytes, text) = block.split_at(BLOCK_ID_SIZE as usize);
        let block_id = u64::from_le_bytes(id_bytes.try_into().unwrap_or_default());
        if block_id & DESC_ID_MASK != id {
            return Err(corrupt(format!(
                "its data block belongs to id {:#x}",
                block_id & DESC_ID_MASK
            )));
        }
        String::from_utf8_lossy(text).into_owned()
    };
    Ok(Some(LogRecord {
        seq,
        timestamp_ns: get(info, offsets.ts_nsec)?,
        level: get(info, offsets.level)? as u8,
        facility: get(info, offsets.facility)? as u8,
        text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(size_bits: u32) -> Ringbuffer {
        Ringbuffer {
            addr: Va::new(0),
            count_bits: 4,
            descs: Va::new(0),
            infos: None,
            head_id: 0,
            tail_id: 0,
            size_bits,
            data: Va::new(0),
        }
    }

    #[test]
    fn get_data_cases() {
        let r = rb(8); // a 256-byte ring
        assert_eq!(r.locate(NO_LPOS, NO_LPOS), Ok(Some((0, 0))));
        assert_eq!(r.locate(1, 1), Ok(None));
        // Regular: lpos 0x310..0x330 is index 0x10, 0x20 bytes (8 of them the id).
        assert_eq!(r.locate(0x310, 0x330), Ok(Some((0x10, 0x18))));
        // Wrapping: begins in wrap 3, ends in wrap 4 at index 0x18: data at 0.
        assert_eq!(r.locate(0x3f0, 0x418), Ok(Some((0, 0x10))));
        assert!(r.locate(0x300, 0x600).is_err()); // two wraps apart
        assert!(r.locate(0x301, 0x320).is_err()); // misaligned
        assert!(r.locate(0x310, 0x314).is_err()); // misaligned end
        assert!(r.locate(0x310, 0x310).is_err()); // empty, not data-less
        assert!(r.locate(0x3f8, 0x400).is_err()); // wraps with only the id: size 0 < 8
    }
}
