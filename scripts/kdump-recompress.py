#!/usr/bin/python3
"""Rewrite a flat kdump file with another page compression (Debian's python3-lzo, python3-snappy).

    kdump-recompress.py IN.flat OUT lzo|snappy

QEMU 7.2 as Debian builds it writes kdump files with zlib only, and Debian's makedumpfile
cannot read QEMU's ELF dumps; this keeps every header, bitmap and page of IN and only
re-encodes each compressed page with the real liblzo2 (lzo1x_1, as makedumpfile -l) or libsnappy
(as makedumpfile -p), storing a page raw when it does not shrink, as makedumpfile does. The
output is therefore a kdump file whose pages were compressed by those libraries, not by vmi.
"""

import struct
import sys
import zlib

FLAGS = {"lzo": 0x2, "snappy": 0x4}


def main():
    src, dst, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "lzo":
        import lzo

        def pack(page):
            return lzo.compress(page, 1, False)
    else:
        import snappy

        pack = snappy.compress
    data = open(src, "rb").read()
    assert data[:8] == b"KDUMP   ", "not a flat kdump file"
    block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<IIII", data, 428)
    version = struct.unpack_from("<I", data, 8)[0]
    if version >= 6:
        max_mapnr = struct.unpack_from("<Q", data, block_size + 96)[0]
    bitmap_off = (1 + sub_hdr_size) * block_size
    half = bitmap_blocks * block_size // 2
    bitmap2 = data[bitmap_off + half : bitmap_off + 2 * half]
    count = sum(bin(b).count("1") for b in bitmap2[: (max_mapnr + 7) // 8])
    descs = bitmap_off + 2 * half
    data_start = descs + 24 * count
    out = bytearray(data[:data_start])
    seen = {}
    for i in range(count):
        off, size, flags, pflags = struct.unpack_from("<QIIQ", data, descs + 24 * i)
        key = (off, size, flags)
        if key not in seen:
            raw = data[off : off + size]
            page = zlib.decompress(raw) if flags & 0x1 else raw
            assert len(page) == block_size
            packed = pack(page)
            if len(packed) < block_size:
                seen[key] = (len(out), len(packed), FLAGS[kind])
                out += packed
            else:
                seen[key] = (len(out), block_size, 0)
                out += page
        noff, nsize, nflags = seen[key]
        struct.pack_into("<QIIQ", out, descs + 24 * i, noff, nsize, nflags, pflags)
    # The VMCOREINFO and notes areas lie before the page data and are kept as they were.
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main()
