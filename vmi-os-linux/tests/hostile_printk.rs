//! Hostile guests that flood the kernel log: real dumps whose `prb` points to a made-up printk
//! ring (computed on demand, mapped through the kernel's own page tables; see
//! `hostile::made_up_kernel_memory`) with 4,194,304 committed data-less records, or with
//! 32,000 records of 64 KiB of text each (2 GB). `dmesg` must end within seconds, keep at most
//! its bounds (records, text bytes) of the newest records, say so in a warning, and size no
//! allocation by the guest's counts (the allocation meter of the hostile tests).

mod common;
mod hostile;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use common::Guest;
use hostile::{largest_alloc, made_up_kernel_memory, put, Patches};
use vmi_core::{AddressSpace, Profile, Session};
use vmi_os_linux::analysis::dmesg::{dmesg, LogRecord};
use vmi_os_linux::comps::printk::{MAX_RECORDS, MAX_TEXT_BYTES};
use vmi_os_linux::Partial;

const WITHIN: Duration = Duration::from_secs(20);
/// `desc_finalized` in the top two bits of `state_var`.
const FINALIZED: u64 = 2 << 62;
/// `NO_LPOS`: a data-less block.
const NO_LPOS: u64 = 3;

struct Base {
    guest: Guest,
    open: hostile::OpenGuest,
    real: Vec<LogRecord>,
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.open.session
    }

    fn space(&self) -> AddressSpace {
        self.open.kernel.space()
    }
}

/// A 4-level and a 5-level guest.
fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let guests: Vec<Guest> = common::guests().into_iter().filter(|g| !g.pti).collect();
        let mut picked: Vec<Guest> = Vec::new();
        for paging in [4, 5] {
            picked.extend(guests.iter().find(|g| g.paging == paging).cloned());
        }
        picked
            .into_iter()
            .map(|guest| {
                let open = hostile::open_guest(&guest);
                let log = dmesg(&open.session, &open.kernel).unwrap();
                assert!(
                    log.warnings.is_empty(),
                    "{}: {:?}",
                    guest.name,
                    log.warnings
                );
                assert!(log.items.len() > 100, "{}: a real log", guest.name);
                Base {
                    guest,
                    open,
                    real: log.items,
                }
            })
            .collect()
    })
}

/// Offset of `outer.inner` in `ty` (`outer` a struct member).
fn nested(p: &Profile, ty: &str, outer: &str, inner: &str) -> u64 {
    let f = p.field(ty, outer).unwrap();
    let vmi_core::profile::TypeRef::Struct(name) = &f.ty else {
        panic!("{ty}.{outer} is not a struct")
    };
    f.offset + p.field_offset(name, inner).unwrap()
}

/// What the made-up ring holds.
#[derive(Clone, Copy)]
enum Flood {
    /// `2^count_bits` committed records without text.
    DataLess { count_bits: u32 },
    /// `n` records of `block` bytes each (the 8-byte id, then the text) in a 2 GiB text ring.
    Text { n: u64, block: u64 },
}

/// A session of `b` whose `prb` points to a made-up ring holding `flood`; the newest record
/// has descriptor id `head`.
fn flooded(b: &Base, flood: Flood, head: u64) -> Session {
    let p = b.open.kernel.profile();
    let rb = "printk_ringbuffer";
    let count_bits_at = nested(p, rb, "desc_ring", "count_bits");
    let descs_at = nested(p, rb, "desc_ring", "descs");
    let infos_at = nested(p, rb, "desc_ring", "infos");
    let head_at = nested(p, rb, "desc_ring", "head_id");
    let tail_at = nested(p, rb, "desc_ring", "tail_id");
    let size_bits_at = nested(p, rb, "text_data_ring", "size_bits");
    let data_at = nested(p, rb, "text_data_ring", "data");
    let desc_size = p.struct_size("prb_desc").unwrap();
    let state_at = p.field_offset("prb_desc", "state_var").unwrap();
    let begin_at = nested(p, "prb_desc", "text_blk_lpos", "begin");
    let next_at = nested(p, "prb_desc", "text_blk_lpos", "next");
    let info_size = p.struct_size("printk_info").unwrap();
    let seq_at = p.field_offset("printk_info", "seq").unwrap();
    let ts_at = p.field_offset("printk_info", "ts_nsec").unwrap();
    let len_at = p.field_offset("printk_info", "text_len").unwrap();

    let (count_bits, size_bits, records) = match flood {
        Flood::DataLess { count_bits } => (count_bits, 12u32, 1u64 << count_bits),
        Flood::Text { n, .. } => (n.next_power_of_two().trailing_zeros(), 31, n),
    };
    let count = 1u64 << count_bits;
    let tail = head + 1 - records;
    // Made-up memory: the ring header at 0, descriptors from 1 GiB, infos from 2 GiB, text
    // from 4 GiB (2 GiB long).
    const G: u64 = 1 << 30;
    let (descs, infos, data) = (G, 2 * G, 4 * G);
    let probe = made_up_kernel_memory(b, 7, Arc::new(|_, buf: &mut [u8]| buf.fill(0)));
    let base = probe.va.raw();
    let fill = move |off: u64, buf: &mut [u8]| {
        buf.fill(0);
        let end = off + buf.len() as u64;
        if off < G {
            put(buf, off, count_bits_at, &count_bits.to_le_bytes());
            put(buf, off, descs_at, &(base + descs).to_le_bytes());
            put(buf, off, infos_at, &(base + infos).to_le_bytes());
            put(buf, off, head_at, &head.to_le_bytes());
            put(buf, off, tail_at, &tail.to_le_bytes());
            put(buf, off, size_bits_at, &size_bits.to_le_bytes());
            put(buf, off, data_at, &(base + data).to_le_bytes());
        }
        // The id of the descriptor at index `idx` (only the live ones, tail..=head).
        let id_at = |idx: u64| {
            let id = head.wrapping_sub(head.wrapping_sub(idx) & (count - 1));
            (id >= tail).then_some(id)
        };
        if off < descs + count * desc_size && end > descs {
            let from = off.saturating_sub(descs) / desc_size;
            let mut idx = from;
            while idx < count && descs + idx * desc_size < end {
                if let Some(id) = id_at(idx) {
                    let d = descs + idx * desc_size;
                    put(buf, off, d + state_at, &(FINALIZED | id).to_le_bytes());
                    let (begin, next) = match flood {
                        Flood::DataLess { .. } => (NO_LPOS, NO_LPOS),
                        Flood::Text { block, .. } => {
                            let k = id - tail;
                            (k * block, (k + 1) * block)
                        }
                    };
                    put(buf, off, d + begin_at, &begin.to_le_bytes());
                    put(buf, off, d + next_at, &next.to_le_bytes());
                }
                idx += 1;
            }
        }
        if off < infos + count * info_size && end > infos {
            let from = off.saturating_sub(infos) / info_size;
            let mut idx = from;
            while idx < count && infos + idx * info_size < end {
                if let Some(id) = id_at(idx) {
                    let i = infos + idx * info_size;
                    put(buf, off, i + seq_at, &id.to_le_bytes());
                    put(buf, off, i + ts_at, &(id * 1000).to_le_bytes());
                    let len = match flood {
                        Flood::DataLess { .. } => 0u16,
                        Flood::Text { block, .. } => (block - 8) as u16,
                    };
                    put(buf, off, i + len_at, &len.to_le_bytes());
                }
                idx += 1;
            }
        }
        if let Flood::Text { n, block } = flood {
            if end > data && off < data + n * block {
                buf.iter_mut().for_each(|b| *b = b'x');
                let from = off.saturating_sub(data) / block;
                let mut k = from;
                while k < n && data + k * block < end {
                    put(buf, off, data + k * block, &(tail + k).to_le_bytes());
                    k += 1;
                }
            }
        }
    };
    let made_up = made_up_kernel_memory(b, 7, Arc::new(fill));
    assert_eq!(made_up.va, probe.va);
    let prb = b.open.kernel.symbol("prb").unwrap();
    let mut patches = Patches::default().u64_at(b, prb, base);
    patches
        .0
        .insert(made_up.root_patch.0, made_up.root_patch.1.clone());
    hostile::synthetic_session(
        &b.open.memory,
        &b.open.registers,
        &patches.0,
        vec![made_up.region],
    )
}

/// `dmesg` of the flooded guest on another thread, with its time and largest allocation.
fn run(i: usize, what: &str, flood: Flood, head: u64) -> (Partial<LogRecord>, Duration, usize) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let b = &bases()[i];
        let s = flooded(b, flood, head);
        let started = Instant::now();
        let (log, largest) = largest_alloc(|| dmesg(&s, &b.open.kernel).unwrap());
        let took = started.elapsed();
        let _ = tx.send(());
        (log, took, largest)
    });
    match rx.recv_timeout(WITHIN) {
        Ok(()) => handle.join().unwrap_or_else(|_| panic!("{what}: panicked")),
        Err(_) => panic!("{what}: no end within {WITHIN:?} (or a panic)"),
    }
}

/// The bound warning, checked to name what was left.
fn bound_warning(name: &str, log: &Partial<LogRecord>, bound: &str) {
    let text: Vec<String> = log.warnings.iter().map(|w| w.to_string()).collect();
    let capped: Vec<&String> = text.iter().filter(|w| w.contains("not kept")).collect();
    assert_eq!(capped.len(), 1, "{name}: {text:?}");
    assert!(capped[0].contains(bound), "{name}: {}", capped[0]);
    eprintln!("{name}: {}", capped[0]);
}

fn four_million_data_less_records_keep_the_newest_within_the_bound() {
    for (i, b) in bases().iter().enumerate() {
        let name = format!("{}: 2^22 data-less records", b.guest.name);
        // The ids run on from a large value, as on a guest up for a long time.
        let head = (7u64 << 40) + (1 << 22) - 1;
        let (log, took, largest) = run(i, &name, Flood::DataLess { count_bits: 22 }, head);
        eprintln!(
            "{name}: {} records in {took:?}, largest allocation {largest} bytes",
            log.items.len()
        );
        assert_eq!(log.items.len(), MAX_RECORDS, "{name}");
        // The newest ones, oldest first, in sequence.
        let first = head + 1 - MAX_RECORDS as u64;
        for (k, r) in log.items.iter().enumerate() {
            assert_eq!(r.seq, first + k as u64, "{name}: record {k}");
            assert_eq!(r.timestamp_ns, r.seq * 1000);
            assert!(r.text.is_empty());
        }
        bound_warning(&name, &log, &format!("{MAX_RECORDS} records"));
        // What is kept: the records (no text); no allocation sized by the ring's 2^22.
        let kept = log.items.capacity() * std::mem::size_of::<LogRecord>();
        assert!(kept <= 16 << 20, "{name}: {kept} bytes of records");
        assert!(
            largest <= 16 << 20,
            "{name}: allocated {largest} bytes at once"
        );
    }
}

fn two_gib_of_text_keep_the_newest_within_the_text_bound() {
    for (i, b) in bases().iter().enumerate() {
        // Fewer than the 2^15 descriptors, so no block ends at the 2 GiB wrap.
        const N: u64 = 32_000;
        const BLOCK: u64 = 65_536;
        let name = format!("{}: {N} records of {BLOCK} bytes", b.guest.name);
        let head = 5_000_000 + N - 1;
        let (log, took, largest) = run(i, &name, Flood::Text { n: N, block: BLOCK }, head);
        let text: usize = log.items.iter().map(|r| r.text.len()).sum();
        eprintln!(
            "{name}: {} records, {text} bytes of text in {took:?}, largest allocation {largest} bytes",
            log.items.len()
        );
        let per = (BLOCK - 8) as usize;
        assert_eq!(log.items.len(), MAX_TEXT_BYTES / per, "{name}");
        assert!(text <= MAX_TEXT_BYTES, "{name}");
        assert_eq!(
            log.items.last().unwrap().seq,
            head,
            "{name}: the newest is kept"
        );
        assert!(log
            .items
            .iter()
            .all(|r| r.text.len() == per && r.text.bytes().all(|c| c == b'x')));
        bound_warning(&name, &log, &format!("{MAX_TEXT_BYTES} bytes of text"));
        assert!(
            largest <= 4 << 20,
            "{name}: allocated {largest} bytes at once"
        );
    }
}

/// The made-up ring read with a size the bounds do not touch: every record, as made.
fn a_small_made_up_ring_reads_whole() {
    for (i, b) in bases().iter().enumerate() {
        let name = format!("{}: 2^10 data-less records", b.guest.name);
        let (log, _, _) = run(i, &name, Flood::DataLess { count_bits: 10 }, 5000 + 1023);
        assert_eq!(log.items.len(), 1024, "{name}");
        assert!(log.warnings.is_empty(), "{name}: {:?}", log.warnings);
        assert_eq!(log.items[0].seq, 5000);
        assert_eq!(log.items[1023].seq, 6023);
        // And the guest's own log is untouched by the bounds.
        assert!(b.real.len() < MAX_RECORDS);
    }
}

vmi_fixtures::real_guest_tests!(
    four_million_data_less_records_keep_the_newest_within_the_bound,
    two_gib_of_text_keep_the_newest_within_the_text_bound,
    a_small_made_up_ring_reads_whole,
);
