#!/usr/bin/python3
"""Cut a memory capture written by a real tool to a raw disk out of the disk image (stdlib only).

    capture-extract.py IMAGE OUT lime|avml|avml-compressed

IMAGE is a sparse, zero-filled disk image that a tool inside the guest (LiME's lime.ko, AVML)
wrote its capture to, from offset 0 (the guest saw it as /dev/vdX). The capture ends where its
records end: this walks them (each 32-byte header: u32 magic, u32 version, u64 first address,
u64 last address (inclusive), u64 zero), checks that the bytes after the last one are zero (the
untouched rest of the disk), then truncates IMAGE to that length and renames it to OUT, so OUT is
byte for byte what the tool wrote. Prints one JSON object on stdout: {"bytes": N, "ranges":
[[first, last], ...]} (physical addresses, inclusive, as the headers say).

Formats (LiME 1.9.1's lime.ko, AVML 0.21):
  lime, avml        LiME version 1 records: magic 0x4C694D45, then last - first + 1 raw bytes.
  avml-compressed   AVML version 2 records: magic 0x4C4D5641 ("AVML" read as little-endian
                    bytes), then a snappy *framed* stream of the range's bytes, then a u64
                    little-endian count of the stream's bytes.
"""

import json
import os
import struct
import sys

LIME_MAGIC = 0x4C694D45
AVML_MAGIC = 0x4C4D5641
HEADER = struct.Struct("<IIQQQ")
# No guest here has more than a few GiB or more than a few hundred RAM ranges.
MAX_RECORDS = 1 << 16
MAX_RANGE = 1 << 40


class CaptureError(Exception):
    pass


def varint(buf, pos, end):
    """The snappy block preamble: the uncompressed length as a little-endian base-128 varint."""
    value = shift = 0
    while pos < end and shift < 35:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value
        shift += 7
    raise CaptureError("bad snappy length preamble")


def snappy_frames_len(f, start, want):
    """Bytes of the snappy framed stream at `start` that decodes to `want` bytes.

    Chunks: 1 type byte, 3-byte little-endian length, body. 0xff stream identifier, 0x00
    compressed (4-byte CRC, then a snappy block whose preamble is its decoded length), 0x01
    uncompressed (4-byte CRC, then the bytes), 0x80-0xfe skippable padding.
    """
    pos = start
    got = 0
    chunks = 0
    while got < want:
        chunks += 1
        if chunks > (want >> 10) + 16:
            raise CaptureError(f"too many snappy chunks at {pos:#x}")
        f.seek(pos)
        head = f.read(4)
        if len(head) != 4:
            raise CaptureError(f"snappy stream truncated at {pos:#x}")
        kind = head[0]
        size = int.from_bytes(head[1:], "little")
        if kind == 0x00:
            body = f.read(min(size, 16))
            if size < 5 or len(body) < 5:
                raise CaptureError(f"short compressed chunk at {pos:#x}")
            got += varint(body, 4, len(body))
        elif kind == 0x01:
            if size < 4:
                raise CaptureError(f"short uncompressed chunk at {pos:#x}")
            got += size - 4
        elif kind == 0xFF or 0x80 <= kind <= 0xFE:
            pass
        else:
            raise CaptureError(f"reserved snappy chunk type {kind:#x} at {pos:#x}")
        pos += 4 + size
    if got != want:
        raise CaptureError(f"snappy stream at {start:#x} decodes to {got} bytes, not {want}")
    return pos - start


def walk(f, image_len, kind):
    magic, version = (AVML_MAGIC, 2) if kind == "avml-compressed" else (LIME_MAGIC, 1)
    pos = 0
    ranges = []
    while len(ranges) < MAX_RECORDS:
        f.seek(pos)
        raw = f.read(HEADER.size)
        if len(raw) < HEADER.size or raw == bytes(HEADER.size):
            break
        m, v, first, last, reserved = HEADER.unpack(raw)
        if (m, v) != (magic, version) or reserved != 0:
            raise CaptureError(f"no {kind} record header at {pos:#x}: {raw.hex()}")
        if last < first or last - first >= MAX_RANGE:
            raise CaptureError(f"bad range [{first:#x}, {last:#x}] at {pos:#x}")
        length = last - first + 1
        pos += HEADER.size
        if kind == "avml-compressed":
            stream = snappy_frames_len(f, pos, length)
            f.seek(pos + stream)
            (count,) = struct.unpack("<Q", f.read(8))
            if count != stream:
                raise CaptureError(f"AVML trailer at {pos + stream:#x} says {count}, stream has {stream}")
            pos += stream + 8
        else:
            pos += length
        if pos > image_len:
            raise CaptureError(f"record [{first:#x}, {last:#x}] runs past the end of the image")
        ranges.append([first, last])
    else:
        raise CaptureError(f"more than {MAX_RECORDS} records")
    if not ranges:
        raise CaptureError("no record at offset 0: the tool wrote nothing")
    # What follows must be the untouched (zero) disk, or the walk stopped too early.
    f.seek(pos)
    tail = f.read(1 << 20)
    if tail.strip(b"\0"):
        raise CaptureError(f"non-zero bytes after the last record at {pos:#x}")
    return pos, ranges


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("lime", "avml", "avml-compressed"):
        print(__doc__, file=sys.stderr)
        return 2
    image, out, kind = sys.argv[1:]
    image_len = os.path.getsize(image)
    with open(image, "rb") as f:
        end, ranges = walk(f, image_len, kind)
    os.truncate(image, end)
    os.rename(image, out)
    json.dump({"bytes": end, "ranges": ranges}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CaptureError, OSError, struct.error) as e:
        print(f"capture-extract: error: {e}", file=sys.stderr)
        sys.exit(1)
