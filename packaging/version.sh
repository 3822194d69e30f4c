#!/bin/sh
# version.sh: the package version, Debian-valid, from git describe:
#   tag v1.2.3 on HEAD        1.2.3
#   5 commits after v1.2.3    1.2.3+git20261202063903.5.abc1234
#   no tag                    0.1.0~git20261202063903.abc1234
# with ".dirty" for uncommitted changes. The commit time (UTC) keeps
# successive builds of a branch in upgrade order.
set -eu
desc=$(git describe --tags --long --match 'v[0-9]*' --dirty 2>/dev/null || true)
stamp=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd 2>/dev/null || echo 0)
hash=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=.dirty
fi
case "$desc" in
v[0-9]*)
	d=${desc%-dirty}
	d=${d#v}
	n=${d%-g*}
	n=${n##*-}
	tag=${d%-*-g*}
	tag=$(printf %s "$tag" | tr -c 'A-Za-z0-9.+~\n' '.')
	if [ "$n" = 0 ]; then
		echo "$tag${dirty:++git$stamp$dirty}"
	else
		echo "$tag+git$stamp.$n.$hash$dirty"
	fi
	;;
*)
	echo "0.1.0~git$stamp.$hash$dirty"
	;;
esac
