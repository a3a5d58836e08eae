package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cpuPlan is the -pin flag: the CPUs the measured targets run on (each
// target process, started under taskset) and the rest, where the bench
// (load generator, backend, authorization servers) and Redis run. Pinned,
// a target has its cores to itself and does not compete with the load
// it serves, which is how a gateway runs in production; unpinned, every
// process shares every core and the figures swing with the scheduler.
type cpuPlan struct {
	targets unix.CPUSet
	rest    unix.CPUSet
	list    string // the targets' CPUs as given, for taskset and the report
}

// parsePin reads a CPU list ("1", "2,3", "2-3") and checks that the
// machine has those CPUs and at least one more.
func parsePin(s string) (*cpuPlan, error) {
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		return nil, fmt.Errorf("-pin: reading this process's CPUs: %w", err)
	}
	p := &cpuPlan{list: s}
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		z, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || z < a {
			return nil, fmt.Errorf("-pin %q: want a CPU list such as 1 or 2-3", s)
		}
		for cpu := a; cpu <= z; cpu++ {
			if !online.IsSet(cpu) {
				return nil, fmt.Errorf("-pin %q: CPU %d is not available to this process", s, cpu)
			}
			p.targets.Set(cpu)
		}
	}
	for cpu := range 1024 {
		if online.IsSet(cpu) && !p.targets.IsSet(cpu) {
			p.rest.Set(cpu)
		}
	}
	if p.rest.Count() == 0 {
		return nil, fmt.Errorf("-pin %q leaves no CPU for the load generator and the backend", s)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, fmt.Errorf("-pin needs taskset (apt-get install util-linux): %w", err)
	}
	return p, nil
}

// confineSelf moves every thread of this process to the rest CPUs.
// Threads started later inherit it, and so do children (Redis) not
// started through target. A thread may start, from one not yet moved,
// while the list is read: the list is read again until every thread on
// it was already where it belongs.
func (p *cpuPlan) confineSelf() error {
	for range 100 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		moved := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var now unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &now); err == nil && now == p.rest {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &p.rest); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pinning the bench to its CPUs: %w", err)
			}
			moved++
		}
		if moved == 0 {
			return nil
		}
	}
	return errors.New("pinning the bench to its CPUs: its threads kept changing")
}

// target returns cmd run on the targets' CPUs; nil p leaves it alone. The
// process starts there, so a Go target's GOMAXPROCS is the number of
// those CPUs.
func (p *cpuPlan) target(cmd *exec.Cmd) *exec.Cmd {
	if p == nil {
		return cmd
	}
	pinned := exec.Command("taskset", append([]string{"-c", p.list, cmd.Path}, cmd.Args[1:]...)...)
	pinned.Env, pinned.Dir = cmd.Env, cmd.Dir
	return pinned
}
