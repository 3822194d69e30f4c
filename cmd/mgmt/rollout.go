package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/spf13/cobra"
)

// rolloutFlags are `mgmt deploy`'s staged rollout flags.
type rolloutFlags struct {
	canary       int
	batch        string
	maxFailures  string
	timeout      time.Duration
	noRollback   bool
	status       bool
	resume       bool
	abort        bool
	spec         deploy.RolloutSpec // parsed
	stagedByFlag []string           // the flags that asked for a staged rollout
}

var stagedFlags = []string{"canary", "batch", "max-failures", "batch-timeout", "no-rollback"}

func (r *rolloutFlags) define(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&r.canary, "canary", 0, "staged rollout: give the deploy to N canary hosts first; any failure among them halts")
	f.StringVar(&r.batch, "batch", "100%", "staged rollout: then N hosts (or P% of them) at a time")
	f.StringVar(&r.maxFailures, "max-failures", "0", "staged rollout: failed hosts (N or P%) it survives, depooling them; one more halts it")
	f.DurationVar(&r.timeout, "batch-timeout", 5*time.Minute, "staged rollout: a host not converged on the deploy this long after its batch started has failed")
	f.BoolVar(&r.noRollback, "no-rollback", false, "staged rollout: on a halt, leave the hosts that got the deploy on it")
	f.BoolVar(&r.status, "status", false, "show the last rollout (--json: its record)")
	f.BoolVar(&r.resume, "resume", false, "go on with the running rollout (after the deploying process was killed)")
	f.BoolVar(&r.abort, "abort", false, "halt the running rollout, sending the hosts that got its deploy back to the previous one")
}

// parse checks the flags; true when a deploy is to be rolled out in
// stages (storing is true for --file and --git).
func (r *rolloutFlags) parse(cmd *cobra.Command, storing bool) (bool, error) {
	for _, name := range stagedFlags {
		if cmd.Flags().Changed(name) {
			r.stagedByFlag = append(r.stagedByFlag, "--"+name)
		}
	}
	if len(r.stagedByFlag) == 0 {
		return false, nil
	}
	if !storing {
		return false, &usageError{fmt.Sprintf("deploy: %s: only with --file or --git (a new deploy to roll out)", strings.Join(r.stagedByFlag, ", "))}
	}
	batch, err := deploy.ParseAmount("--batch", r.batch)
	if err != nil {
		return false, &usageError{err.Error()}
	}
	budget, err := deploy.ParseAmount("--max-failures", r.maxFailures)
	if err != nil {
		return false, &usageError{err.Error()}
	}
	r.spec = deploy.RolloutSpec{Canary: r.canary, Batch: batch, MaxFailures: budget, Timeout: r.timeout, NoRollback: r.noRollback}
	if err := r.spec.Check(); err != nil {
		return false, &usageError{err.Error()}
	}
	return true, nil
}

func (o *deployOpts) runRollout(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "mgmt-deploy-")
	if err != nil {
		return &failedError{err}
	}
	defer os.RemoveAll(tmp)
	b, git, err := o.bundle(ctx, tmp)
	if err != nil {
		return err // before anything is stored
	}
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	m, r, err := st.StartRollout(ctx, b, deploy.PutOptions{Message: o.message, Git: git}, o.rollout.spec)
	if err != nil {
		if ae := (*deploy.AmountError)(nil); errors.As(err, &ae) {
			return &usageError{err.Error()}
		}
		return &failedError{err}
	}
	describe(os.Stderr, "deployed (staged)", m)
	fmt.Println(m.Number)
	fmt.Fprintf(os.Stderr, "rollout of %d (from %d) over %d hosts: %s; budget %d failed, batch timeout %v, rollback %s\n",
		r.Deploy, r.From, len(r.Hosts), plan(r), r.MaxFailures, seconds(r.Timeout), onOff(r.Rollback))
	if err := o.prune(ctx, st); err != nil {
		return err
	}
	return follow(ctx, st, os.Stderr)
}

func (o *deployOpts) runResume(ctx context.Context) error {
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	r, _, err := st.ReadRollout(ctx)
	if err != nil {
		return &failedError{err}
	}
	if r.State == deploy.RolloutRunning {
		fmt.Fprintf(os.Stderr, "resuming the rollout of %d at batch %d\n", r.Deploy, r.Batch)
	}
	return follow(ctx, st, os.Stderr)
}

func (o *deployOpts) runAbort(ctx context.Context) error {
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := st.AbortRollout(ctx, "aborted by "+whoAmI())
	if err != nil {
		return &failedError{err}
	}
	fmt.Fprintf(os.Stderr, "rollout of %d aborted at batch %d: %s\n", r.Deploy, r.Batch, r.Reason)
	return nil
}

func (o *deployOpts) runStatus(ctx context.Context, w io.Writer) error {
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	r, _, err := st.ReadRollout(ctx)
	if err != nil {
		return &failedError{err}
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printStatus(w, r)
	return nil
}

// whoAmI names the user and host in an abort's reason.
func whoAmI() string {
	u, h := "unknown", "unknown"
	if cur, err := user.Current(); err == nil {
		u = cur.Username
	}
	if name, err := os.Hostname(); err == nil {
		h = name
	}
	return u + "@" + h
}

// follow drives the rollout to its end, printing each batch's result:
// nil when it completed, a *failedError when it halted, was aborted or
// was left running (ctx ended: a signal).
func follow(ctx context.Context, st *deploy.Store, w io.Writer) error {
	p := &progress{w: w, started: map[int]bool{}, ended: map[int]bool{}}
	r, err := st.Drive(ctx, p.see)
	if err != nil {
		if ctx.Err() != nil {
			return &failedError{fmt.Errorf("rollout of %d left running at batch %d: `mgmt deploy --status` shows it, --resume or --abort finishes it", r.Deploy, r.Batch)}
		}
		return &failedError{err}
	}
	switch r.State {
	case deploy.RolloutCompleted:
		fmt.Fprintf(w, "rollout of %d completed in %v: %s; current is %d\n", r.Deploy, r.Ended.Sub(r.Started).Round(time.Millisecond), tally(r), r.Deploy)
		return nil
	default:
		return &failedError{fmt.Errorf("rollout of %d %s at batch %d: %s (%s)", r.Deploy, r.State, r.Batch, r.Reason, tally(r))}
	}
}

// progress prints a rollout's batches as the records Drive reads show
// them given and judged.
type progress struct {
	w       io.Writer
	started map[int]bool // batches announced
	ended   map[int]bool // batches whose result was printed
}

func (p *progress) see(r deploy.Rollout) {
	for i, b := range r.Batches {
		if len(b) == 0 || i > r.Batch {
			continue
		}
		given, decided := 0, 0
		for _, h := range b {
			if res, ok := r.Results[h]; ok {
				given++
				if res != deploy.HostPending {
					decided++
				}
			}
		}
		if given > 0 && !p.started[i] {
			p.started[i] = true
			fmt.Fprintf(p.w, "%s: deploy %d given to %s\n", batchName(r, i), r.Deploy, strings.Join(b, " "))
		}
		over := decided == len(b) || (r.State != deploy.RolloutRunning && given > 0)
		if !over || p.ended[i] {
			continue
		}
		p.ended[i] = true
		var done, failed, pending []string
		for _, h := range b {
			switch r.Results[h] {
			case deploy.HostDone:
				done = append(done, h)
			case deploy.HostFailed:
				failed = append(failed, h)
			default:
				pending = append(pending, h)
			}
		}
		fmt.Fprintf(p.w, "%s: %d done, %d failed", batchName(r, i), len(done), len(failed))
		if len(pending) > 0 {
			fmt.Fprintf(p.w, ", %d not judged (halted)", len(pending))
		}
		fmt.Fprintln(p.w)
		for _, h := range failed {
			mark := ""
			if contains(r.Depooled, h) {
				mark = " (depooled)"
			}
			fmt.Fprintf(p.w, "  %s failed: %s%s\n", h, r.Why[h], mark)
		}
	}
}

func batchName(r deploy.Rollout, i int) string {
	if i == 0 {
		return "canaries"
	}
	return fmt.Sprintf("batch %d/%d", i, len(r.Batches)-1)
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// plan says how the hosts are split: "canaries web3, then 2 batches of up to 2".
func plan(r deploy.Rollout) string {
	var parts []string
	if len(r.Batches[0]) > 0 {
		parts = append(parts, "canaries "+strings.Join(r.Batches[0], " "))
	}
	if n := len(r.Batches) - 1; n > 0 {
		parts = append(parts, fmt.Sprintf("%d batches of up to %d", n, len(r.Batches[1])))
	}
	return strings.Join(parts, ", then ")
}

// tally: "4 done, 1 failed (depooled: web2), 0 not reached".
func tally(r deploy.Rollout) string {
	done, failed, pending := 0, 0, 0
	for _, res := range r.Results {
		switch res {
		case deploy.HostDone:
			done++
		case deploy.HostFailed:
			failed++
		default:
			pending++
		}
	}
	s := fmt.Sprintf("%d done, %d failed", done, failed)
	if pending > 0 {
		s += fmt.Sprintf(", %d pending", pending)
	}
	if len(r.Depooled) > 0 {
		s += " (depooled: " + strings.Join(r.Depooled, " ") + ")"
	}
	if left := len(r.Hosts) - len(r.Results); left > 0 {
		s += fmt.Sprintf(", %d not reached", left)
	}
	return s
}

// printStatus shows a rollout record, one line per host.
func printStatus(w io.Writer, r deploy.Rollout) {
	fmt.Fprintf(w, "rollout of %d (from %d): %s at %s, started %s", r.Deploy, r.From, r.State, batchName(r, r.Batch), r.Started.Format(time.RFC3339))
	if !r.Ended.IsZero() {
		fmt.Fprintf(w, ", ended %s", r.Ended.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\n  %s; budget %d failed, batch timeout %v, rollback %s\n", tally(r), r.MaxFailures, seconds(r.Timeout), onOff(r.Rollback))
	if r.Reason != "" {
		fmt.Fprintf(w, "  %s\n", r.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tHOST\tRESULT\tWHY")
	for i, b := range r.Batches {
		for _, h := range b {
			res, ok := r.Results[h]
			if !ok {
				res = "-" // not reached
			}
			why := r.Why[h]
			if contains(r.Depooled, h) {
				why += " (depooled)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", batchName(r, i), h, res, strings.TrimSpace(why))
		}
	}
	tw.Flush()
}
