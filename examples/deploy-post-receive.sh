#!/bin/sh
# A git post-receive hook that deploys every push to the deploy branch: copy
# it to hooks/post-receive of the bare repository the fleet's graph is pushed
# to, make it executable, and say where the cluster is:
#
#   git config mgmt.seeds https://10.0.0.1:2379     # required
#   git config mgmt.branch main                     # default main
#   git config mgmt.file graph.yaml                 # default graph.yaml
#   git config mgmt.etcd-ca /etc/mgmt/ca.crt        # TLS, if the cluster uses it
#   git config mgmt.etcd-cert /etc/mgmt/deploy.crt
#   git config mgmt.etcd-key /etc/mgmt/deploy.key
#   git config mgmt.bin /usr/local/bin/mgmt         # default: mgmt on PATH
#
# Each push deploys the commit it moved the branch to (the commits in
# between are history, not deploys). A graph that does not validate is
# refused before anything is stored, and the push reports it.
set -u
seeds=$(git config mgmt.seeds) || { echo "mgmt: git config mgmt.seeds is not set: nothing deployed" >&2; exit 1; }
mgmt=$(git config mgmt.bin || echo mgmt)
branch=$(git config mgmt.branch || echo main)
file=$(git config mgmt.file || echo graph.yaml)
set -- --seeds "$seeds" --file "$file"
for k in ca cert key; do
	if v=$(git config "mgmt.etcd-$k"); then
		set -- "$@" "--etcd-$k" "$v"
	fi
done
status=0
while read -r old new ref; do
	[ "$ref" = "refs/heads/$branch" ] || continue
	case $new in *[!0]*) ;; *) continue ;; esac # the branch was deleted
	if n=$("$mgmt" deploy --git "$PWD" --rev "$new" "$@"); then
		echo "mgmt: deployed $new as deploy $n"
	else
		echo "mgmt: deploy of $new failed: nothing stored" >&2
		status=1
	fi
done
exit $status
