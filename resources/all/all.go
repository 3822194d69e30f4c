// Package all imports every resource kind, so that each registers itself.
package all

import (
	_ "github.com/mgmtconfig/mgmt/resources/exec"
	_ "github.com/mgmtconfig/mgmt/resources/file"
	_ "github.com/mgmtconfig/mgmt/resources/noop"
	_ "github.com/mgmtconfig/mgmt/resources/timer"
)
