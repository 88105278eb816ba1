//! Recognising `linux_banner` in kernel bytes.
//!
//! `init/version-timestamp.c` (6.x) defines it as
//! `"Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY "@" LINUX_COMPILE_HOST ") ("
//! LINUX_COMPILER ") " UTS_VERSION "\n"`, NUL-terminated, in `.rodata`. Format strings and
//! messages that merely mention "Linux version" do not have that shape.

/// What every banner starts with.
pub const BANNER_PREFIX: &[u8] = b"Linux version ";
/// Longest banner accepted (real ones are about 200 bytes).
const MAX_BANNER_LEN: usize = 1024;

/// The `linux_banner` in `bytes`: its offset and its text without the final newline.
///
/// Since 6.1 `init/version.o` also carries a banner built before the build number is known
/// (`"... # SMP ..."`); the real one, from `init/version-timestamp.o`, has `#<number>`. The first
/// banner with a build number wins; failing that, the first of the right shape.
///
/// ```
/// use vmi_os_linux::kallsyms::find_banner;
///
/// let mut image = b"\0printk: Linux version %s\n\0".to_vec();
/// image.extend_from_slice(b"Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) \
///     (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) # SMP PREEMPT_DYNAMIC Debian 6.1.192-2\n\0");
/// let real = image.len();
/// image.extend_from_slice(b"Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) \
///     (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2\n\0");
/// let (offset, banner) = find_banner(&image).unwrap();
/// assert_eq!(offset, real);
/// assert!(banner.starts_with("Linux version 6.1.0-56-amd64 ("));
/// ```
pub fn find_banner(bytes: &[u8]) -> Option<(usize, &str)> {
    let mut from = 0usize;
    let mut fallback = None;
    while let Some(rel) = bytes.get(from..).and_then(find_prefix) {
        let at = from + rel;
        if let Some(text) = banner_at(bytes, at) {
            if has_build_number(text) {
                return Some((at, text));
            }
            fallback.get_or_insert((at, text));
        }
        from = at + 1;
    }
    fallback
}

/// The banner at the very start of `bytes`, if the bytes there have its shape.
pub fn banner_at_start(bytes: &[u8]) -> Option<&str> {
    bytes
        .starts_with(BANNER_PREFIX)
        .then(|| banner_at(bytes, 0))?
}

/// Whether the banner's `UTS_VERSION` part starts with `#` and a digit.
fn has_build_number(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'#' && w[1].is_ascii_digit())
}

/// The kernel release in a banner (`6.1.0-56-amd64` of `Linux version 6.1.0-56-amd64 (...`).
pub fn release(banner: &str) -> Option<&str> {
    let rest = banner.strip_prefix("Linux version ")?;
    rest.split(' ').next().filter(|r| !r.is_empty())
}

/// The offset of the first [`BANNER_PREFIX`] in `hay`.
fn find_prefix(hay: &[u8]) -> Option<usize> {
    let first = BANNER_PREFIX[0];
    let mut from = 0usize;
    loop {
        let rel = hay.get(from..)?.iter().position(|&c| c == first)?;
        let at = from + rel;
        if hay.get(at..)?.starts_with(BANNER_PREFIX) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// The banner at `at` if the bytes there have its shape: printable text with a release that
/// starts with a digit, a `(` after it and a `#` build number, ending in `"\n\0"`.
fn banner_at(bytes: &[u8], at: usize) -> Option<&str> {
    let window = bytes.get(at..bytes.len().min(at.saturating_add(MAX_BANNER_LEN)))?;
    let nl = window.iter().position(|&c| c == b'\n')?;
    if window.get(nl + 1) != Some(&0) {
        return None;
    }
    let text = &window[..nl];
    if !text.iter().all(|c| (0x20..=0x7e).contains(c)) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let rel = release(text)?;
    let after = &text[BANNER_PREFIX.len() + rel.len()..];
    let shaped = rel.as_bytes()[0].is_ascii_digit()
        && rel.contains('.')
        && after.starts_with(" (")
        && after.contains('#');
    shaped.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &[u8] = b"Linux version 6.12.117+deb12-amd64 (debian-kernel@lists.debian.org) \
        (x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for \
        Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2026-11-14)\n\0";

    #[test]
    fn finds_the_real_shape_and_skips_mentions() {
        let mut b =
            b"Linux version %s (%s)\n\0Linux version 6.1 no paren\n\0Linux version ".to_vec();
        let start = b.len();
        b.extend_from_slice(REAL);
        let (at, text) = find_banner(&b).unwrap();
        assert_eq!(at, start);
        assert_eq!(release(text), Some("6.12.117+deb12-amd64"));
        assert!(text.ends_with("(2026-11-14)"));
    }

    #[test]
    fn prefers_the_banner_with_a_build_number() {
        let early = b"Linux version 6.1.0 (me@host) (gcc) # SMP Debian\n\0";
        let mut b = early.to_vec();
        assert_eq!(
            find_banner(&b),
            Some((0, "Linux version 6.1.0 (me@host) (gcc) # SMP Debian"))
        );
        b.extend_from_slice(b"Linux version 6.1.0 (me@host) (gcc) #1 SMP Debian\n\0");
        assert_eq!(find_banner(&b).map(|(at, _)| at), Some(early.len()));
    }

    #[test]
    fn rejects_unterminated_and_unprintable() {
        assert_eq!(find_banner(&REAL[..REAL.len() - 1]), None);
        let mut b = REAL.to_vec();
        b[30] = 0x01;
        assert_eq!(find_banner(&b), None);
        assert_eq!(find_banner(b"Linux version "), None);
        assert_eq!(find_banner(b""), None);
    }
}
