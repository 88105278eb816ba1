#!/usr/bin/env python3
"""Dump a running fixture guest over QMP (stdlib only).

Used by scripts/fixture-guest once the guest printed @@VMI-READY@@:

    fixture-qmp.py SOCKET OUTDIR MEM_BYTES [--user-mode]

Over the QMP Unix socket it sends qmp_capabilities, stop, the HMP command
`info registers -a`, dump-guest-memory (ELF, paging false; then each kdump
format QEMU offers) and pmemsave of guest-physical [0, MEM_BYTES), then quit.
With --user-mode it stops the guest again (cont, stop) until vCPU 0 is at CPL 3
(the low bits of CS), for the PTI fixtures. It writes into OUTDIR:

    registers.txt   the `info registers -a` text, as QEMU printed it
    vcpus.tsv       one line per vCPU: index cr0 cr3 cr4 efer cs (0x-prefixed hex)
    memory.elf      dump-guest-memory output
    memory.kdump-zlib, memory.kdump-lzo, memory.kdump-snappy
                    dump-guest-memory in makedumpfile's (flattened) kdump
                    format, for each compression this QEMU was built with
    memory.raw      pmemsave output, exactly MEM_BYTES bytes
    qemu-version    QEMU's version as reported by query-version

Progress goes to stderr. Exits non-zero on any QMP error.
"""

import json
import os
import re
import socket
import sys
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=600.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # QEMU creates the socket at start-up; retry briefly in case we are early.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected greeting: {greeting}")
        self.greeting = greeting

    def _read(self):
        line = self.file.readline()
        if not line:
            raise QMPError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            # Asynchronous events (STOP, RESUME, DUMP_COMPLETED...) can come
            # before the reply; skip them.
            if "event" in reply:
                continue
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error']}")
            return reply.get("return")

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()


def parse_registers(text):
    """Return [(index, cr0, cr3, cr4, efer, cs)] from `info registers -a` text.

    QEMU prints one block per vCPU, each starting with "CPU#<n>", containing
    e.g. "CR0=80050033 CR2=... CR3=0000000002a0c000 CR4=00370ef0" and
    "EFER=0000000000000d01".
    """
    vcpus = []
    blocks = re.split(r"^CPU#(\d+)\s*$", text, flags=re.M)
    # blocks = [before, idx0, body0, idx1, body1, ...]
    for idx, body in zip(blocks[1::2], blocks[2::2]):
        regs = {}
        for name in ("CR0", "CR3", "CR4", "EFER"):
            m = re.search(r"\b" + name + r"=([0-9a-fA-F]+)", body)
            if not m:
                raise QMPError(f"no {name} for CPU#{idx} in info registers")
            regs[name] = int(m.group(1), 16)
        m = re.search(r"^CS =([0-9a-fA-F]+)", body, flags=re.M)
        if not m:
            raise QMPError(f"no CS for CPU#{idx} in info registers")
        cs = int(m.group(1), 16)
        vcpus.append((int(idx), regs["CR0"], regs["CR3"], regs["CR4"], regs["EFER"], cs))
    if not vcpus:
        raise QMPError("no CPU#n block in info registers")
    return vcpus


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[4:] not in ([], ["--user-mode"]):
        print(__doc__, file=sys.stderr)
        return 2
    sock_path, outdir, mem_bytes = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
    user_mode = sys.argv[4:] == ["--user-mode"]

    q = QMP(sock_path)
    try:
        q.cmd("qmp_capabilities")
        v = q.cmd("query-version")
        qv = v["qemu"]
        version = f"{qv['major']}.{qv['minor']}.{qv['micro']}"
        if v.get("package"):
            version += " " + v["package"].strip()
        with open(os.path.join(outdir, "qemu-version"), "w") as f:
            f.write(version + "\n")

        q.cmd("stop")
        status = q.cmd("query-status")
        if status.get("running"):
            raise QMPError(f"guest still running after stop: {status}")

        regs = q.cmd("human-monitor-command", **{"command-line": "info registers -a"})
        tries = 0
        while user_mode and parse_registers(regs)[0][5] & 3 != 3:
            tries += 1
            if tries > 2000:
                raise QMPError("vCPU 0 never stopped at CPL 3")
            q.cmd("cont")
            time.sleep(0.002 * (tries % 7 + 1))
            q.cmd("stop")
            regs = q.cmd("human-monitor-command", **{"command-line": "info registers -a"})
        if user_mode:
            print(f"fixture-qmp: vCPU 0 at CPL 3 after {tries} re-stops", file=sys.stderr)
        with open(os.path.join(outdir, "registers.txt"), "w") as f:
            f.write(regs)
        with open(os.path.join(outdir, "vcpus.tsv"), "w") as f:
            for idx, cr0, cr3, cr4, efer, cs in parse_registers(regs):
                f.write(f"{idx}\t{cr0:#x}\t{cr3:#x}\t{cr4:#x}\t{efer:#x}\t{cs:#x}\n")

        t = time.monotonic()
        elf = os.path.join(outdir, "memory.elf")
        q.cmd("dump-guest-memory", paging=False, protocol="file:" + elf)
        print(f"fixture-qmp: memory.elf in {time.monotonic() - t:.1f}s", file=sys.stderr)

        offered = q.cmd("query-dump-guest-memory-capability")["formats"]
        for fmt in ("kdump-zlib", "kdump-lzo", "kdump-snappy"):
            if fmt not in offered:
                print(f"fixture-qmp: this QEMU cannot write {fmt}", file=sys.stderr)
                continue
            t = time.monotonic()
            path = os.path.join(outdir, "memory." + fmt)
            q.cmd("dump-guest-memory", paging=False, protocol="file:" + path, format=fmt)
            print(f"fixture-qmp: memory.{fmt} in {time.monotonic() - t:.1f}s", file=sys.stderr)

        t = time.monotonic()
        raw = os.path.join(outdir, "memory.raw")
        q.cmd("pmemsave", val=0, size=mem_bytes, filename=raw)
        print(f"fixture-qmp: memory.raw in {time.monotonic() - t:.1f}s", file=sys.stderr)
        if os.path.getsize(raw) != mem_bytes:
            raise QMPError(f"memory.raw has {os.path.getsize(raw)} bytes, expected {mem_bytes}")

        try:
            q.cmd("quit")
        except QMPError:
            pass  # QEMU may close the socket before replying
    finally:
        q.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (QMPError, OSError, ValueError, KeyError) as e:
        print(f"fixture-qmp: error: {e}", file=sys.stderr)
        sys.exit(1)
