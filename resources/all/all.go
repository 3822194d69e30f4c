// Package all registers every resource kind: import it for its side effects.
package all

import (
	// Each kind registers itself with the engine from init.
	_ "github.com/mgmtconfig/mgmt/resources/cron"
	_ "github.com/mgmtconfig/mgmt/resources/exec"
	_ "github.com/mgmtconfig/mgmt/resources/file"
	_ "github.com/mgmtconfig/mgmt/resources/group"
	_ "github.com/mgmtconfig/mgmt/resources/hostname"
	_ "github.com/mgmtconfig/mgmt/resources/kv"
	_ "github.com/mgmtconfig/mgmt/resources/line"
	_ "github.com/mgmtconfig/mgmt/resources/mount"
	_ "github.com/mgmtconfig/mgmt/resources/msg"
	_ "github.com/mgmtconfig/mgmt/resources/noop"
	_ "github.com/mgmtconfig/mgmt/resources/pkg"
	_ "github.com/mgmtconfig/mgmt/resources/sshkey"
	_ "github.com/mgmtconfig/mgmt/resources/svc"
	_ "github.com/mgmtconfig/mgmt/resources/sysctl"
	_ "github.com/mgmtconfig/mgmt/resources/timer"
	_ "github.com/mgmtconfig/mgmt/resources/user"
)
