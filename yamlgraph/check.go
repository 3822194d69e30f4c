package yamlgraph

import (
	"fmt"
	"unicode/utf8"

	"github.com/mgmtconfig/mgmt/quote"
	"go.yaml.in/yaml/v3"
)

// MaxName bounds names (of resources, of the graph, of edges) and collect
// patterns, in bytes. A resource's name is in every message and log line
// about it, and is often its path (a file's, a package's): 4096 is Linux's
// PATH_MAX, the longest path the kernel takes, so no name that names
// something real is refused, and a line about one stays readable.
const MaxName = 4096

// checkName says what is wrong with a name, or "": empty names are
// checked by the caller, which knows what the name is for.
func checkName(name string) string {
	if len(name) > MaxName {
		return fmt.Sprintf("is %d bytes long (%s): want at most %d bytes (PATH_MAX); a name is repeated in every message and log line about its resource",
			len(name), quote.String(name), MaxName)
	}
	if i, r := quote.Find(name); i >= 0 {
		if r == utf8.RuneError {
			return fmt.Sprintf("%s holds a byte that is not UTF-8 at offset %d: want printable text", quote.String(name), i)
		}
		return fmt.Sprintf("%s holds %U at offset %d, a character that does not print as itself (a control, format, bidirectional-override or invisible character): want printable text",
			quote.String(name), r, i)
	}
	return ""
}

// checkTags refuses every explicit YAML tag (!!binary, !!str, !custom) in
// the tree under n: a tag changes what a value means without changing how
// it looks (a path written as !!binary base64 reads as another path), and
// no field of a graph needs one. Aliases are not followed: the node their
// anchor marks is checked where it is written.
func (p *parser) checkTags(n *yaml.Node) {
	if n == nil {
		return
	}
	if n.Style&yaml.TaggedStyle != 0 {
		p.errorf(n, "", "explicit YAML tag %s: tags are not accepted in a graph (a tagged value does not read as it looks); write the value plainly, quoted if it must be a string", quote.String(n.Tag))
	}
	if n.Kind == yaml.AliasNode {
		return
	}
	for _, c := range n.Content {
		p.checkTags(c)
	}
}
