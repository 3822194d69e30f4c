#!/bin/sh
# boot.sh prepares a test host's root and then, only when the harness
# outside has checked the isolation and answered "boot", execs systemd.
#
# It runs as PID 1 of a new pid namespace, already in new mount (made
# private by the harness), uts, ipc, cgroup and net namespaces, with the
# real machine's root still visible. Nothing below writes to the real
# machine's filesystems: every mount is made inside this private mount
# namespace, on directories of the harness's own state dir, and the few
# files made here are on the fresh tmpfs mounts (the overlay's writable
# layer, /dev), which exist only in this namespace.
#
# Environment (set by the harness):
#   TH_DIR         state dir on the real machine (holds rw/, merged/, console.log)
#   TH_TMPFS_SIZE  size of the tmpfs holding the overlay's writable layer
#   TH_HOST_MNTNS  readlink of the harness's /proc/self/ns/mnt
#   TH_LOGLEVEL    systemd's log level
# fd 3: read end of the harness's control pipe ("boot" or anything else)
# fd 4: write end of the status pipe ("ready" or "fail <why>")
set -eu

fail() {
	echo "testhost boot: $*" >&2
	echo "fail $*" >&4 || true
	exit 1
}

# --- first, refuse to do anything outside fresh namespaces ---
[ "$$" = 1 ] || fail "not PID 1 of a new pid namespace (pid $$)"
[ -n "${TH_HOST_MNTNS:-}" ] || fail "TH_HOST_MNTNS not set"
[ "$(readlink /proc/self/ns/mnt)" != "$TH_HOST_MNTNS" ] || fail "still in the host's mount namespace"
mount --make-rprivate /

RW=$TH_DIR/rw
M=$TH_DIR/merged
CONSOLE=$TH_DIR/console.log
[ -d "$RW" ] && [ -d "$M" ] && [ -f "$CONSOLE" ] || fail "state dir $TH_DIR incomplete"

# --- the root: overlay of the real root (read-only) and a private tmpfs ---
mount -t tmpfs -o mode=0755,size="$TH_TMPFS_SIZE" testhost-rw "$RW"
mkdir "$RW/upper" "$RW/work"
mount -t overlay testhost-root -o "lowerdir=/,upperdir=$RW/upper,workdir=$RW/work" "$M"

# --- API filesystems, all fresh ---
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
for p in sys sysrq-trigger; do
	[ -e "$M/proc/$p" ] || continue
	mount --bind "$M/proc/$p" "$M/proc/$p"
	mount -o remount,bind,ro "$M/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$M/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,size=4m,nosuid testhost-dev "$M/dev"
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$M/dev/pts"
: >"$M/dev/console"
mount --bind "$CONSOLE" "$M/dev/console"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m testhost-tmp "$M/tmp"
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m testhost-run "$M/run"

# Device nodes, units and the rest of the configuration are written by the
# harness, from outside, after its checks (see prepare in testhost.go).

# --- pivot into the overlay; the real root becomes unreachable ---
cd "$M"
mkdir -p .testhost-oldroot
pivot_root . .testhost-oldroot
cd /
umount -l /.testhost-oldroot
rmdir /.testhost-oldroot

# --- check what we can see from here; the harness checks again outside ---
# (builtins only where possible: every exec costs milliseconds)
# shellcheck disable=SC2046
set -- $(stat -fc %T / /tmp /run)
[ "$*" = "overlayfs tmpfs tmpfs" ] || fail "/, /tmp, /run are $*, want overlayfs tmpfs tmpfs"
for f in /tmp/* /tmp/.[!.]* /tmp/..?*; do
	[ -e "$f" ] || [ -L "$f" ] || continue
	fail "/tmp is not empty: $f"
done
cg=
while read -r l; do
	case $l in 0::*) cg=$l ;; esac
done </proc/self/cgroup
[ "$cg" = "0::/" ] || fail "not at the root of a cgroup namespace: $cg"

echo ready >&4
answer=
read -r answer <&3 || true
[ "$answer" = boot ] || fail "harness refused to boot: ${answer:-no answer}"
exec 3<&- 4>&-

exec env -i container=mgmt-testhost TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	setpriv --bounding-set=-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override,-audit_control,-audit_read,-sys_pacct \
	/lib/systemd/systemd --system --unit=testhost.target --show-status=no \
	--log-target=journal-or-kmsg --log-level="${TH_LOGLEVEL:-info}"
