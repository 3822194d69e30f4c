#!/bin/bash
# setup-deps.sh installs, on a Debian 12 machine, what the test hosts of
# test/testhost need (systemd, D-Bus, PackageKit with its apt backend, polkit,
# util-linux, iproute2, ping, dpkg-dev), lintian for the package test, Graphviz
# for the DOT test, and sshd and sudo for the --remote tests (run only inside
# test hosts). It is idempotent: it installs only
# the packages that are missing, and runs `apt-get update` once, only then.
# Run it as root before `go test ./...` on a fresh machine (CI does).
set -euo pipefail

PKGS=(
	systemd          # /lib/systemd/system, PID 1 of every test host; busctl; systemd-hostnamed (hostname resource)
	dbus             # the hosts' system bus
	packagekit       # packagekitd + its apt backend, activated on the hosts' bus
	packagekit-tools # pkcon, used by the harness's own PackageKit test
	polkitd          # PackageKit asks polkit before it changes anything
	util-linux       # nsenter, setpriv, unshare; setsid for the exec tests
	mount            # mount, umount, pivot_root
	coreutils        # mknod, stat, ...
	iproute2         # ip netns, veth, bridge for multi-host tests
	iputils-ping     # ping between hosts on a test bridge
	dpkg-dev         # dpkg-scanpackages, to index the local test repository; dpkg-shlibdeps for make deb
	lintian          # test/deb checks the package make deb builds
	graphviz         # dot, for pgraph's DOT test (make deps runs this script)
	openssh-server   # sshd, started only inside test hosts for the --remote tests
	sudo             # --remote-sudo, inside test hosts
)

if [ "$(id -u)" != 0 ]; then
	echo "setup-deps.sh: must run as root" >&2
	exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "setup-deps.sh: all ${#PKGS[@]} packages already installed"
	exit 0
fi

echo "setup-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# --no-install-recommends: only what the harness uses. policy-rc.d keeps
# maintainer scripts from starting services on this machine (it has no
# running systemd anyway; this only makes that explicit).
prc=/usr/sbin/policy-rc.d
created_prc=0
if [ ! -e "$prc" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$prc"
	chmod 0755 "$prc"
	created_prc=1
fi
trap 'if [ "$created_prc" = 1 ]; then rm -f "$prc"; fi' EXIT
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup-deps.sh: done"
