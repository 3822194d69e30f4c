package engine

// Ref names a resource as users write it in an edge: kind and name.
type Ref struct {
	Kind string
	Name string
}

func (r Ref) String() string { return r.Kind + "[" + r.Name + "]" }

// EdgeDecl is an edge as declared in a graph file.
type EdgeDecl struct {
	Name   string
	From   Ref
	To     Ref
	Notify bool
	Source string // "file:line:col", for messages
}

// CollectDecl asks for the resources of Kind that other hosts export.
type CollectDecl struct {
	Kind    string
	Pattern string
	Source  string
}

// Decl is a whole graph as declared, before automatic edges and grouping.
type Decl struct {
	Name     string
	Vertices []*Vertex
	Edges    []EdgeDecl
	Collect  []CollectDecl
}
