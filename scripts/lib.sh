# Shared helpers of scripts/test and scripts/demo (sourced, not run).

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages the project needs, only those missing, with one apt-get update.
ensure_debian_packages() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing Debian packages: ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# What building, the fixture builder and the tests need.
# debootstrap and e2fsprogs (mkfs.ext4 -d) build the systemd guests' Debian root and its disk.
BASE_PACKAGES=(build-essential pkg-config qemu-system-x86 qemu-utils busybox-static cpio xz-utils python3 python3-venv ca-certificates makedumpfile python3-lzo python3-snappy debootstrap e2fsprogs)

ensure_rust() {
	if ! command -v cargo >/dev/null 2>&1; then
		[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
	fi
	command -v cargo >/dev/null 2>&1 || {
		echo "cargo not found: install the Rust toolchain (rustup) first" >&2
		exit 1
	}
}

# apt-get download needs package lists; a fresh machine may have none.
ensure_apt_lists() {
	if ! apt-cache policy 2>/dev/null | grep -q 'bookworm-security'; then
		log "apt-get update (package lists are needed to find kernel packages)"
		apt-get update -q
	fi
}
