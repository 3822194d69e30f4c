package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// ErrDirty reports a work tree whose HEAD is not what it holds: tracked
// files changed, or a file the graph needs not committed.
var ErrDirty = errors.New("git work tree is not clean")

// GitSource is a graph in a git repository.
type GitSource struct {
	Repo string // a work tree, or a bare repository (a post-receive hook's)
	Rev  string // default HEAD
	File string // the graph, relative to the repository's top (default graph.yaml)
}

// Refer says which local files (and trees) the graph file graph refers to,
// as absolute paths below graph's directory: the caller parses it.
type Refer func(graph string) ([]LocalFile, error)

// FromGit writes the graph file at src.Rev, and the files it refers to as
// they are in that commit, into the empty directory dir, and returns the
// graph's path there and the commit. With Rev HEAD in a work tree, it
// refuses a dirty tree: any change to tracked files (staged or not) is
// ErrDirty, and so is a file the graph refers to that is untracked.
// Untracked files the graph does not need are allowed.
func FromGit(ctx context.Context, src GitSource, dir string, refer Refer) (string, *Git, error) {
	if src.Rev == "" {
		src.Rev = "HEAD"
	}
	if src.File == "" {
		src.File = GraphName
	}
	file := path.Clean(filepath.ToSlash(src.File))
	if !safeName(file) {
		return "", nil, fmt.Errorf("git: --file %q: want a path inside the repository", src.File)
	}
	g := &gitCmd{repo: src.Repo}
	commit, err := g.out(ctx, "rev-parse", "--verify", "--end-of-options", src.Rev+"^{commit}")
	if err != nil {
		return "", nil, err
	}
	subject, err := g.out(ctx, "log", "-1", "--format=%s", commit)
	if err != nil {
		return "", nil, err
	}
	bare, err := g.out(ctx, "rev-parse", "--is-bare-repository")
	if err != nil {
		return "", nil, err
	}
	// Paths in git are from the top of the tree; a work tree's subdirectory
	// given as Repo still means its top.
	untracked := map[string]bool{}
	if bare != "true" && src.Rev == "HEAD" {
		if untracked, err = g.clean(ctx); err != nil {
			return "", nil, err
		}
	}
	info := &Git{Commit: commit, Subject: subject}

	// The graph first, alone, to learn what else it needs.
	probe := filepath.Join(dir, "probe")
	graph, err := g.raw(ctx, "show", commit+":"+file)
	if err != nil {
		if untracked[file] {
			return "", nil, fmt.Errorf("%w: %s is untracked: git add and commit it", ErrDirty, file)
		}
		return "", nil, fmt.Errorf("git: %s is not in commit %.12s: %w", file, commit, err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(probe, file)), 0o755); err != nil {
		return "", nil, fmt.Errorf("git: %w", err)
	}
	if err := os.WriteFile(filepath.Join(probe, file), graph, 0o644); err != nil {
		return "", nil, fmt.Errorf("git: %w", err)
	}
	local, err := refer(filepath.Join(probe, file))
	if err != nil {
		return "", nil, err
	}
	paths := []string{file}
	for _, l := range local {
		rel, err := filepath.Rel(probe, l.Path)
		if err != nil || !filepath.IsLocal(rel) {
			continue // outside the repository: Bundle names it
		}
		rel = filepath.ToSlash(rel)
		if _, err := g.out(ctx, "cat-file", "-e", commit+":"+rel); err != nil {
			if untracked[rel] || hasPrefixDir(untracked, rel) {
				return "", nil, fmt.Errorf("%w: %s: %s is untracked: git add and commit it", ErrDirty, l.By, rel)
			}
			return "", nil, fmt.Errorf("git: %s: %s is not in commit %.12s", l.By, rel, commit)
		}
		paths = append(paths, rel)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", nil, fmt.Errorf("git: %w", err)
	}
	args := append([]string{"archive", "--format=tar", commit, "--"}, paths...)
	cmd := g.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("git archive: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("git archive: %w", err)
	}
	uerr := untar(stdout, tree, false)
	if uerr != nil {
		cmd.Process.Kill()
	}
	werr := cmd.Wait()
	if uerr != nil {
		return "", nil, fmt.Errorf("git archive of %.12s: %w", commit, uerr)
	}
	if werr != nil {
		return "", nil, fmt.Errorf("git archive: %w: %s", werr, bytes.TrimSpace(stderr.Bytes()))
	}
	return filepath.Join(tree, filepath.FromSlash(file)), info, nil
}

func hasPrefixDir(set map[string]bool, dir string) bool {
	for p := range set {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

type gitCmd struct{ repo string }

// command runs git in the repository, with none of the GIT_ variables a
// hook is given (GIT_DIR=. would otherwise mean the hook's directory).
func (g *gitCmd) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", g.repo}, args...)...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GIT_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	return cmd
}

func (g *gitCmd) out(ctx context.Context, args ...string) (string, error) {
	b, err := g.raw(ctx, args...)
	return strings.TrimRight(string(b), "\n"), err
}

func (g *gitCmd) raw(ctx context.Context, args ...string) ([]byte, error) {
	cmd := g.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s in %s: %w: %s", args[0], g.repo, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return b, nil
}

// clean refuses changes to tracked files and returns the untracked ones,
// as paths from the top of the tree.
func (g *gitCmd) clean(ctx context.Context) (map[string]bool, error) {
	out, err := g.out(ctx, "status", "--porcelain=v1", "-z", "--untracked-files=all")
	if err != nil {
		return nil, err
	}
	// status -z names paths from the top of the tree.
	untracked := map[string]bool{}
	var changed []string
	fields := strings.Split(out, "\x00")
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if len(f) < 4 {
			continue
		}
		st, p := f[:2], f[3:]
		if st[0] == 'R' || st[0] == 'C' {
			i++ // the rename's source follows
		}
		if st == "??" {
			untracked[p] = true
			continue
		}
		changed = append(changed, p)
	}
	if len(changed) > 0 {
		more := ""
		if len(changed) > 5 {
			changed, more = changed[:5], fmt.Sprintf(" and %d more", len(changed)-5)
		}
		return nil, fmt.Errorf("%w: %s has changes not committed (%s%s): commit or stash them, so that what is deployed is a commit", ErrDirty, g.repo, strings.Join(changed, ", "), more)
	}
	return untracked, nil
}
