#!/bin/sh
# build.sh BINARY VERSION OUTDIR: builds OUTDIR/mgmt_VERSION_ARCH.deb with
# dpkg-deb from a built mgmt binary: the files of install.sh (PREFIX=/usr),
# the maintainer scripts and conffiles of this directory, and the
# copyright and changelog files policy asks for. Prints the .deb's path.
#
# DEB_ARCH (default: dpkg --print-architecture), DEB_MAINTAINER (default:
# git's user.name and user.email), DEB_COMPRESS (xz; gzip builds faster)
# and DEB_COMPRESS_LEVEL (dpkg-deb's default).
set -eu

bin=$(realpath "${1:?usage: build.sh BINARY VERSION OUTDIR}")
version=${2:?usage: build.sh BINARY VERSION OUTDIR}
out=${3:?usage: build.sh BINARY VERSION OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
arch=${DEB_ARCH:-$(dpkg --print-architecture)}
compress=${DEB_COMPRESS:-xz}
if [ -z "${DEB_MAINTAINER:-}" ]; then
	DEB_MAINTAINER="$(git config user.name) <$(git config user.email)>"
fi
# The changelog's and man pages' date: the commit's (reproducible builds).
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/DEBIAN"

DESTDIR=$root PREFIX=/usr UNITDIR=/lib/systemd/system \
	ZSHCOMPDIR=/usr/share/zsh/vendor-completions \
	"$here/../install.sh" "$bin" >/dev/null

doc=$root/usr/share/doc/mgmt
install -d -m 0755 "$doc"
{
	cat "$here/copyright"
	echo
	echo "Files: embedded Go modules"
	echo "Comment: the binary is statically linked with these modules;"
	echo " each module's own license is in its source, listed by"
	echo " \`go version -m /usr/bin/mgmt\`:"
	go version -m "$bin" | awk '$1 == "dep" { print " " $2 " " $3 }'
} >"$doc/copyright"
date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
{
	echo "mgmt ($version) unstable; urgency=medium"
	echo
	echo "  * Built from commit $commit."
	echo
	echo " -- $DEB_MAINTAINER  $date"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
install -m 0644 "$here/conffiles" "$root/DEBIAN/"

# The C library the binary links (cgo: NSS for user and group names).
mkdir -p "$work/src/debian"
printf 'Source: mgmt\n\nPackage: mgmt\nArchitecture: any\n' >"$work/src/debian/control"
cp "$root/usr/bin/mgmt" "$work/src/mgmt"
depends=$(cd "$work/src" && dpkg-shlibdeps -O mgmt 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CTL
Package: mgmt
Version: $version
Architecture: $arch
Maintainer: $DEB_MAINTAINER
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Homepage: https://github.com/mgmtconfig/mgmt
Description: event-driven, parallel configuration-management agent
 mgmt keeps a machine in the state a graph of resources describes (files,
 packages, services, commands, timers), applying independent branches in
 parallel and repairing drift as soon as it happens: it watches what it
 manages (inotify, D-Bus signals) instead of polling.
 .
 Hosts share exported resources through etcd, embedded by default. This
 package runs the agent as mgmt.service on /etc/mgmt/graph.yaml.
CTL

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
	xargs md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"

deb=$out/mgmt_${version}_$arch.deb
dpkg-deb --root-owner-group -Z"$compress" ${DEB_COMPRESS_LEVEL:+-z"$DEB_COMPRESS_LEVEL"} --build "$root" "$deb" >/dev/null
echo "$deb"
