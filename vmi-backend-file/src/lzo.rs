//! A safe LZO1X decompressor, for kdump pages written with `makedumpfile -l` (or QEMU's
//! `kdump-lzo`), which compress each page with liblzo2's `lzo1x_1_compress`.
//!
//! Why our own: the Rust LZO crates are C bindings, C-to-Rust translations full of `unsafe`,
//! or young ports under GPL or with few users; the decompressor is a hundred lines of bounds
//! checks over a well-specified format (the instruction stream of `lzo1x_decompress_safe` in
//! the Linux kernel's `lib/lzo/`). Every length and distance is checked against the input and
//! the output buffer, so hostile input yields an error, never a panic or an overrun.
//!
//! Instructions (the first byte of the stream is special-cased when it is above 17):
//! - `0000LLLL` after a match, or at the start: a literal run of `L + 3` bytes (`L == 0`: a
//!   run-length extension follows);
//! - `0000DDSS` right after a literal run of 1..3 bytes... see [`decompress`] for the table.

/// What went wrong decompressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LzoError {
    /// The input ended inside an instruction.
    #[error("LZO input truncated")]
    InputOverrun,
    /// The output would exceed the buffer.
    #[error("LZO output larger than {0} bytes")]
    OutputOverrun(usize),
    /// A match refers to bytes before the start of the output.
    #[error("LZO match distance points before the output start")]
    LookBehindOverrun,
}

struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Result<usize, LzoError> {
        let b = *self.bytes.get(self.pos).ok_or(LzoError::InputOverrun)?;
        self.pos += 1;
        Ok(usize::from(b))
    }

    fn le16(&mut self) -> Result<usize, LzoError> {
        Ok(self.byte()? | (self.byte()? << 8))
    }

    /// A run-length extension: zero bytes add 255 each, the first non-zero byte ends it.
    fn extend(&mut self, base: usize) -> Result<usize, LzoError> {
        let mut n = base;
        loop {
            match self.byte()? {
                0 => n = n.checked_add(255).ok_or(LzoError::InputOverrun)?,
                b => return n.checked_add(b).ok_or(LzoError::InputOverrun),
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LzoError> {
        let end = self.pos.checked_add(n).ok_or(LzoError::InputOverrun)?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(LzoError::InputOverrun)?;
        self.pos = end;
        Ok(s)
    }
}

struct Output<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Output<'_> {
    fn literal(&mut self, bytes: &[u8]) -> Result<(), LzoError> {
        let end = self.len + bytes.len();
        let cap = self.buf.len();
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(LzoError::OutputOverrun(cap))?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Copies `len` bytes from `dist` bytes back, byte by byte (the ranges may overlap).
    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), LzoError> {
        let from = self
            .len
            .checked_sub(dist)
            .ok_or(LzoError::LookBehindOverrun)?;
        if self.len + len > self.buf.len() {
            return Err(LzoError::OutputOverrun(self.buf.len()));
        }
        for i in 0..len {
            self.buf[self.len + i] = self.buf[from + i];
        }
        self.len += len;
        Ok(())
    }
}

/// Decompresses an LZO1X stream into `out`, returning the bytes written.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, LzoError> {
    let mut inp = Input {
        bytes: input,
        pos: 0,
    };
    let mut out = Output { buf: out, len: 0 };
    // `state`: how many literals the previous instruction copied (0, 1..3, or 4 for a long
    // run), which decides what a following `0000xxxx` instruction means.
    let mut state = 0usize;
    let first = *input.first().ok_or(LzoError::InputOverrun)?;
    if first > 17 {
        inp.pos = 1;
        let n = usize::from(first) - 17;
        out.literal(inp.take(n)?)?;
        state = if n < 4 { n } else { 4 };
    }
    loop {
        let t = inp.byte()?;
        let (dist, len) = if t >= 64 {
            // 01LLLDDD / 1LLLLDDD HHHHHHHH: a short match, distance up to 2 KiB.
            let h = inp.byte()?;
            let dist = ((t >> 2) & 7) + (h << 3) + 1;
            (dist, (t >> 5) - 1 + 2)
        } else if t >= 32 {
            // 001LLLLL: a match within 16 KiB; length 2 + L (L == 0: extended).
            let mut len = t & 31;
            if len == 0 {
                len = inp.extend(31)?;
            }
            let d = inp.le16()?;
            (((d >> 2) + 1), len + 2)
        } else if t >= 16 {
            // 0001HLLL: a match 16..48 KiB back; distance 16384 exactly ends the stream.
            let mut len = t & 7;
            if len == 0 {
                len = inp.extend(7)?;
            }
            let d = inp.le16()?;
            let dist = ((t & 8) << 11) + (d >> 2);
            if dist == 0 {
                return Ok(out.len);
            }
            (dist + 16384, len + 2)
        } else if state == 0 {
            // 0000LLLL: a literal run of 3 + L bytes (L == 0: extended).
            let n = if t == 0 { inp.extend(15)? + 3 } else { t + 3 };
            out.literal(inp.take(n)?)?;
            state = 4;
            continue;
        } else if state == 4 {
            // 0000DDSS after a long literal run: a 3-byte match 2..3 KiB back.
            let h = inp.byte()?;
            let dist = (t >> 2) + (h << 2) + 2049;
            let s = t & 3;
            out.copy_match(dist, 3)?;
            out.literal(inp.take(s)?)?;
            state = s;
            continue;
        } else {
            // 0000DDSS after 1..3 literals: a 2-byte match up to 1 KiB back.
            let h = inp.byte()?;
            let dist = (t >> 2) + (h << 2) + 1;
            let s = t & 3;
            out.copy_match(dist, 2)?;
            out.literal(inp.take(s)?)?;
            state = s;
            continue;
        };
        out.copy_match(dist, len)?;
        // Literals that follow the match: the low two bits of the byte two back (the
        // instruction of a short match, the low distance byte of the others).
        let s = usize::from(inp.bytes[inp.pos - 2]) & 3;
        out.literal(inp.take(s)?)?;
        state = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_end_marker() {
        // A first byte above 17: 3 literals; then the end marker 0x11 0x00 0x00.
        let stream = [17 + 3, b'a', b'b', b'c', 0x11, 0, 0];
        let mut out = [0u8; 16];
        assert_eq!(decompress(&stream, &mut out), Ok(3));
        assert_eq!(&out[..3], b"abc");
    }

    #[test]
    fn hostile_streams_are_errors() {
        let mut out = [0u8; 8];
        assert_eq!(decompress(&[], &mut out), Err(LzoError::InputOverrun));
        assert_eq!(
            decompress(&[17 + 9, 1, 2, 3, 4, 5, 6, 7, 8, 9], &mut out),
            Err(LzoError::OutputOverrun(8))
        );
        // A match before any output.
        assert_eq!(
            decompress(&[0x11, 0x04, 0x00], &mut out),
            Err(LzoError::LookBehindOverrun)
        );
        assert_eq!(
            decompress(&[17 + 1, b'x'], &mut out),
            Err(LzoError::InputOverrun)
        );
    }
}
