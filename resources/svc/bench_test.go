package svc

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/mgmtconfig/mgmt/resources/restest"
)

// repairsPerOp is how many repairs one iteration of the benchmark times.
const repairsPerOp = 20

// BenchmarkRepairLatency times, in a test host, how long a managed service
// stays down: from the moment it is stopped (a stop job, as `systemctl
// stop` queues) or its main process is SIGKILLed, to systemd signalling it
// active again, started by the svc resource running as a vertex would.
// The time is seen from a separate connection listening to the unit's
// PropertiesChanged signals; it reports the median, 99th percentile and
// maximum over repairsPerOp repairs per iteration.
func BenchmarkRepairLatency(b *testing.B) {
	for _, bc := range []struct {
		name  string
		drift func(ctx context.Context, e *host, unit string) error
	}{
		{"stop", func(ctx context.Context, e *host, unit string) error {
			_, err := e.sd.StopUnitContext(ctx, unit, "replace", nil)
			return err
		}},
		{"kill", func(ctx context.Context, e *host, unit string) error {
			return e.sd.KillUnitWithTarget(ctx, unit, sddbus.Main, 9)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := bootHost(b)
			const name = "mgmt-bench.service"
			e.writeUnit(name, unit(sleeper))
			r := &Svc{State: StateRunning}
			r.SetName("mgmt-bench")
			env := restest.Env(b, "svc")
			env.Logger = slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			if err := errors.Join(r.Validate(), r.Init(env)); err != nil {
				b.Fatal(err)
			}
			restest.Loop(b, r, nil)
			states := watchStates(b, e, name)
			waitState(b, states, "active", 10*time.Second)

			var took []time.Duration
			for b.Loop() {
				for range repairsPerOp {
					drain(states)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					t0 := time.Now()
					if err := bc.drift(ctx, e, name); err != nil {
						b.Fatal(err)
					}
					waitDown(b, states, 10*time.Second)
					waitState(b, states, "active", 10*time.Second)
					took = append(took, time.Since(t0))
					cancel()
				}
			}
			slices.Sort(took)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(took[len(took)/2]), "median-ms")
			b.ReportMetric(ms(took[(len(took)*99+99)/100-1]), "p99-ms") // nearest rank
			b.ReportMetric(ms(took[len(took)-1]), "max-ms")
		})
	}
}

// watchStates sends the ActiveState values systemd signals for unit, from
// a connection of the benchmark's own.
func watchStates(b *testing.B, e *host, unit string) <-chan string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := e.h.DialBus(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	if err := conn.AddMatchSignalContext(ctx, propsMatch(unitPath(unit))...); err != nil {
		b.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	if err := conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+".Subscribe", 0).Err; err != nil {
		b.Fatal(err)
	}
	states := make(chan string, 64)
	go func() {
		defer close(states)
		for s := range sigs {
			if len(s.Body) < 2 || s.Body[0] != sdUnit {
				continue
			}
			props, _ := s.Body[1].(map[string]dbus.Variant)
			if v, ok := props["ActiveState"]; ok {
				if st, ok := v.Value().(string); ok {
					states <- st
				}
			}
		}
	}()
	return states
}

func drain(states <-chan string) {
	for {
		select {
		case <-states:
		default:
			return
		}
	}
}

func waitState(b *testing.B, states <-chan string, want string, d time.Duration) {
	b.Helper()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case s := <-states:
			if s == want {
				return
			}
		case <-t.C:
			b.Fatalf("the unit was not %s within %v", want, d)
		}
	}
}

// waitDown waits until the unit is signalled going down.
func waitDown(b *testing.B, states <-chan string, d time.Duration) {
	b.Helper()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case s := <-states:
			if s != "active" {
				return
			}
		case <-t.C:
			b.Fatalf("the unit did not go down within %v", d)
		}
	}
}
