# The known processes and the truth of a VMI fixture guest, shared by both kinds of guest
# (sourced with `.`, busybox ash only):
#   - the busybox guest: its PID 1, scripts/guest/init, in the initramfs;
#   - the systemd guest: the truth unit's shell, scripts/guest/systemd/vmi-truth, started by
#     systemd after multi-user.target.
# Both start the same processes and print the same sections, so that every analysis is checked
# the same way on a busybox guest and on a real Debian system (scripts/README.md, "Truth format").
#
# What the caller provides: busybox applets first on PATH (every command below is a busybox
# applet, so the listings follow the same rules on both guests), /proc, /sys, a cgroup2 at
# /sys/fs/cgroup and a writable /tmp; optionally
#   VMI_SH        the busybox shell the known shells run (default /bin/sh, init's)
#   VMI_ENV_PATH  a PATH given to the namespaced process's shell, which `env -i` starts with
#                 none (unset in init, where the default PATH finds busybox; on Debian it would
#                 find dash and util-linux)
# and calls, in order: start_known_processes, start_idler, wait_known_processes (then anything
# that must happen before the truth, e.g. init's captures), print_truth.
#
# Nothing here exits: a failure is a VMI-ERROR line, which makes the host refuse the fixture.

VMI_SH=${VMI_SH:-/bin/sh}
ROLES="alpha beta gamma"

err() { printf 'VMI-ERROR %s\n' "$*"; }

start_known_processes() {
	mkdir -p /sys/fs/cgroup/vmi-box || err "cannot create cgroup /vmi-box"
	# The known processes. `env -i` gives each a known environment; env execs, so
	# the pid stays that of the target. alpha and beta are children of the caller (init);
	# gamma is the child of a shell that stays alive (`& wait`), so its ppid is not the caller.
	env -i VMI_ROLE=alpha VMI_TOKEN=t0k3n-1 \
		/bin/vmi-target --threads 0 alpha > /tmp/target-alpha.out 2>&1 &
	env -i VMI_ROLE=beta VMI_TOKEN=t0k3n-2 VMI_EXTRA=two-words \
		/bin/vmi-target --threads 3 beta --mode=busy "two words" > /tmp/target-beta.out 2>&1 &
	env -i VMI_ROLE=gamma VMI_TOKEN=t0k3n-3 \
		"$VMI_SH" -c '/bin/vmi-target --threads 1 gamma & wait' > /tmp/target-gamma.out 2>&1 &

	# A process that rewrites its title past its arguments (setproctitle), as sshd
	# does; not one of the ROLES (its environment strings are overwritten).
	env -i VMI_ROLE=delta VMI_TOKEN=t0k3n-4 \
		/bin/vmi-target --threads 0 --title delta > /tmp/target-delta.out 2>&1 &

	# Processes for the responder's questions (not ROLES): epsilon holds one file of each kind
	# and runs under a seccomp filter (vmi-target --fds, --seccomp); zeta runs as uid/gid 1000
	# with groups 24 and 1001 and no capabilities (vmi-target --as); eta is pid 1 of its own PID,
	# mount, network and UTS namespaces (busybox unshare forks it), in cgroup /vmi-box, with
	# hostname eta-box and its own tmpfs on /mnt: a container in all but name.
	env -i VMI_ROLE=epsilon /bin/vmi-target --threads 0 --fds 7000 --seccomp epsilon \
		> /tmp/target-epsilon.out 2>&1 &
	env -i VMI_ROLE=zeta /bin/vmi-target --threads 0 --as 1000 zeta > /tmp/target-zeta.out 2>&1 &
	# shellcheck disable=SC2016 # $$ is the inner shell's
	env -i VMI_ROLE=eta ${VMI_ENV_PATH:+"PATH=$VMI_ENV_PATH"} sh -c 'echo $$ > /sys/fs/cgroup/vmi-box/cgroup.procs
	exec unshare -p -m -n -u -f sh -c "hostname eta-box
		mount -t tmpfs eta-tmp /mnt
		exec /bin/vmi-target --threads 0 eta"' > /tmp/target-eta.out 2>&1 &
}

# The caller's own idler, started before the task snapshot so that it is part of it (the
# caller's final `wait` creates no process).
start_idler() {
	sleep 2147483647 &
}

wait_known_processes() {
	for r in $ROLES delta epsilon zeta eta; do
		n=0
		until grep -q '^VMI-TARGET ' "/tmp/target-$r.out" 2>/dev/null; do
			n=$((n + 1))
			if [ "$n" -gt 600 ]; then
				err "target $r printed nothing"
				break
			fi
			usleep 100000
		done
	done
}

# Print a file using only shell builtins (no child process), making sure the
# last line ends with a newline so the END marker stays on its own line.
put() {
	while IFS= read -r l || [ -n "$l" ]; do
		printf '%s\n' "$l"
	done < "$1"
}

begin() { printf '@@VMI-BEGIN %s@@\n' "$1"; }
end() { printf '@@VMI-END %s@@\n' "$1"; }

# One line per process: pid ppid uid gid threads name.
# Builtins only, so this listing does not contain itself. name is the comm
# field of /proc/PID/stat (between the first "(" and the last ")"), last
# because it may contain spaces.
tasks() {
	for d in /proc/[0-9]*; do
		stat=
		read -r stat < "$d/stat" 2>/dev/null || continue
		name=${stat#*(}
		name=${name%)*}
		# shellcheck disable=SC2086 # split the fields after the name on purpose
		set -- ${stat##*) }
		ppid=$2
		uid='' gid='' thr=''
		while read -r k v _; do
			case $k in
			Uid:) uid=$v ;;
			Gid:) gid=$v ;;
			Threads:) thr=$v ;;
			esac
		done < "$d/status"
		printf '%s %s %s %s %s %s\n' "${d#/proc/}" "$ppid" "$uid" "$gid" "$thr" "$name"
	done
}

# One line per process: pid tid1 tid2 ... (builtins only as well).
task_threads() {
	for d in /proc/[0-9]*; do
		line=${d#/proc/}
		for t in "$d"/task/[0-9]*; do
			[ -e "$t" ] || continue
			line="$line ${t##*/}"
		done
		printf '%s\n' "$line"
	done
}

section_file() { begin "$1"; put "$2"; end "$1"; }

# Prints every truth section, then @@VMI-READY@@, on stdout.
print_truth() {
	# Take both process listings first, while nothing transient runs. A function
	# with a redirection runs in this shell (a $(...) would fork and list itself).
	tasks > /tmp/truth-tasks
	task_threads > /tmp/truth-tasks-threads

	section_file version /proc/version
	section_file tasks /tmp/truth-tasks
	section_file tasks-threads /tmp/truth-tasks-threads
	section_file modules /proc/modules

	# Core-kernel symbols only: the anchored pattern drops "\t[module]" lines.
	SYMS='linux_banner|init_task|_text|_stext|_etext|init_top_pgt|sys_call_table'
	SYMS="$SYMS|__start_BTF|__stop_BTF|kallsyms_num_syms|kallsyms_names"
	SYMS="$SYMS|kallsyms_token_table|kallsyms_token_index|kallsyms_offsets"
	SYMS="$SYMS|kallsyms_relative_base|kallsyms_markers|page_offset_base"
	SYMS="$SYMS|vmemmap_base|vmalloc_base|__per_cpu_offset|prb|init_mm|modules"
	begin kallsyms
	grep -E "^[0-9a-f]+ [A-Za-z] ($SYMS)\$" /proc/kallsyms
	end kallsyms

	begin targets
	for r in $ROLES; do
		grep '^VMI-TARGET ' "/tmp/target-$r.out"
	done
	end targets

	for r in $ROLES; do
		line=
		read -r line < "/tmp/target-$r.out"
		pid=${line#*pid=}
		pid=${pid%% *}
		case $pid in
		'' | *[!0-9]*) err "no pid for target $r"; continue ;;
		esac
		section_file "maps/$pid" "/proc/$pid/maps"
		begin "cmdline/$pid"; tr '\0' '\n' < "/proc/$pid/cmdline"; end "cmdline/$pid"
		begin "environ/$pid"; tr '\0' '\n' < "/proc/$pid/environ"; end "environ/$pid"
	done

	# The title process: its pid and the exact bytes of /proc/PID/cmdline, in hex.
	line=
	read -r line < /tmp/target-delta.out
	pid=${line#*pid=}
	pid=${pid%% *}
	begin title
	printf 'pid=%s\n' "$pid"
	printf 'cmdline='
	od -An -tx1 -v < "/proc/$pid/cmdline" | tr -d ' \n'
	printf '\n'
	end title

	begin cpuinfo-flags
	grep -m1 '^flags' /proc/cpuinfo
	end cpuinfo-flags

	section_file iomem /proc/iomem

	# What responders ask (after the task snapshot: these listings fork `ls`, which exits before
	# the dump). For every process of the snapshot but the kernel threads (pid 2 and its
	# children, which have no files):
	#   fds:    "PID FD POS FLAGS MNT_ID INO TARGET", TARGET as readlink(/proc/PID/fd/FD), of
	#           all but pid 1 and this shell ($$), whose own fds change while it prints (in the
	#           busybox guest both are init)
	#   ns:     "PID KIND INODE" for each /proc/PID/ns link
	#   cgroup: "PID LINE" for each line of /proc/PID/cgroup
	#   status/PID: /proc/PID/status (credentials, capabilities, seccomp, NSpid)
	# The fds target's pid is in fds-target, the namespaced one's (its global pid) in ns-target;
	# net/* are this (the initial) network namespace's /proc/net tables, mountinfo/PID the mount
	# trees of pid 1's and the namespaced process's namespaces.
	user_pids=
	while read -r pid ppid _; do
		[ "$pid" = 1 ] || [ "$pid" = 2 ] || [ "$ppid" = 2 ] && continue
		user_pids="$user_pids $pid"
	done < /tmp/truth-tasks
	begin fds
	for pid in $user_pids; do
		[ "$pid" = $$ ] && continue
		ls -l "/proc/$pid/fd/" 2>/dev/null | while IFS= read -r l; do
			case $l in *' -> '*) ;; *) continue ;; esac
			fd=${l%% -> *}
			fd=${fd##* }
			pos='' flags='' mnt='' ino=''
			while read -r k v _; do
				case $k in
				pos:) pos=$v ;;
				flags:) flags=$v ;;
				mnt_id:) mnt=$v ;;
				ino:) ino=$v ;;
				esac
			done < "/proc/$pid/fdinfo/$fd"
			printf '%s %s %s %s %s %s %s\n' "$pid" "$fd" "$pos" "$flags" "$mnt" "$ino" "${l#* -> }"
		done
	done
	end fds
	begin ns
	for pid in $user_pids 1; do
		ls -l "/proc/$pid/ns/" 2>/dev/null | while IFS= read -r l; do
			case $l in *' -> '*) ;; *) continue ;; esac
			kind=${l%% -> *}
			kind=${kind##* }
			ino=${l##*:[}
			printf '%s %s %s\n' "$pid" "$kind" "${ino%]}"
		done
	done
	end ns
	begin cgroup
	for pid in $user_pids 1; do
		while IFS= read -r l; do printf '%s %s\n' "$pid" "$l"; done < "/proc/$pid/cgroup"
	done
	end cgroup
	for pid in $user_pids 1 2; do section_file "status/$pid" "/proc/$pid/status"; done
	line=
	read -r line < /tmp/target-epsilon.out
	pid=${line#*pid=}
	begin fds-target; printf '%s\n' "${pid%% *}"; end fds-target
	ns_pid=
	for pid in $user_pids; do
		while read -r k a b _; do
			[ "$k" = NSpid: ] && [ "$b" = 1 ] && ns_pid=$a
		done < "/proc/$pid/status"
	done
	begin ns-target; printf '%s\n' "$ns_pid"; end ns-target
	for t in tcp tcp6 udp udp6 raw raw6 unix netlink packet; do
		section_file "net/$t" "/proc/net/$t"
	done
	section_file mountinfo/1 /proc/1/mountinfo
	[ -n "$ns_pid" ] && section_file "mountinfo/$ns_pid" "/proc/$ns_pid/mountinfo"
	if [ -e /tmp/truth-captures ]; then section_file captures /tmp/truth-captures; fi

	echo '@@VMI-READY@@'
}

# Idle forever. `wait` creates no process; it returns only if every child has
# died, and then the loop sleeps again rather than returning.
idle_forever() {
	while :; do
		wait
		sleep 2147483647
	done
}
