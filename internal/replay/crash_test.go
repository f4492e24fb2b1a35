package replay

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// envChild makes the test binary a redrive process (see TestMain): the crash
// test runs the redrive in a process it can SIGKILL.
const envChild = "SLUICE_REPLAY_CHILD"

// childSpec is what the child process runs.
type childSpec struct {
	Brokers []string
	Redrive struct {
		Group, TransactionalID, Target, By string
		Parts                              []Partition
		Select                             Selection
		RateLimit                          int
	}
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(envChild); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// runChild runs one redrive and prints its progress after each committed
// transaction, one JSON line each.
func runChild(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c := &testkafka.Cluster{Brokers: s.Brokers}
	out := json.NewEncoder(os.Stdout)
	d := &Redrive{Conn: conn(c), Group: s.Redrive.Group, TransactionalID: s.Redrive.TransactionalID, Parts: s.Redrive.Parts,
		Select: s.Redrive.Select, Target: s.Redrive.Target, Kind: ToRetryTopic, By: s.Redrive.By, RateLimit: s.Redrive.RateLimit,
		Progress: func(p Progress) { _ = out.Encode(p) }}
	if _, err := d.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// TestRedriveCrashesCopyEachSelectedRecordOnce SIGKILLs the redrive process
// while it copies — each kill lands after the process committed copies of its
// own, at a random point of its next transactions — and starts it again,
// while new dead letters keep arriving. The target must hold each selected
// record once (read_committed), the parked topic each parked one once, and
// nothing else.
func TestRedriveCrashesCopyEachSelectedRecordOnce(t *testing.T) {
	c := testkafka.New(t)
	f := newDLQ(t, c, "crash", 100_000)
	var s childSpec
	s.Brokers = c.Brokers
	s.Redrive.Group, s.Redrive.TransactionalID = "sluice-replay."+f.dlq, "sluice-replay."+f.dlq
	s.Redrive.Target, s.Redrive.By = f.target, "ns/crash"
	s.Redrive.Parts = snapshotOf(t, c, f.dlq, nil, time.Time{})
	s.Redrive.Select = Selection{MaxRedrives: 3}
	// Slow enough that kills land mid-run: 100,000 records at 20,000/s.
	s.Redrive.RateLimit = 20_000
	spec, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}

	stopLate := make(chan struct{})
	lateDone := make(chan struct{})
	go func() { // dead letters keep arriving during the redrive
		defer close(lateDone)
		for i := f.n; ; i += 500 {
			select {
			case <-stopLate:
				return
			case <-time.After(200 * time.Millisecond):
			}
			f.produce(t, c, i, i+500)
		}
	}()
	defer func() { close(stopLate); <-lateDone }()

	const kills = 4
	var last Progress
	for run := 0; ; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"="+string(spec))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		var first *Progress
		finished := false
		killAfter := time.Duration(0)
		var progressed time.Time
		for lines.Scan() {
			line := lines.Text()
			if line == "done" {
				finished = true
				continue
			}
			var p Progress
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatalf("run %d: progress line %q: %v", run, line, err)
			}
			if p.Done < last.Done || p.Parked < last.Parked {
				t.Fatalf("run %d: progress went back from %+v to %+v: a resumed run recounts what earlier runs committed", run, last, p)
			}
			last = p
			if first == nil {
				first = &p // the recount of what earlier runs committed
				continue
			}
			if run < kills && p.Done > first.Done && killAfter == 0 {
				// It has committed copies of its own: kill it somewhere in
				// the transactions that follow.
				killAfter = time.Duration(rand.IntN(400)) * time.Millisecond
				progressed = time.Now()
				go func() {
					time.Sleep(killAfter)
					_ = cmd.Process.Signal(syscall.SIGKILL)
				}()
			}
		}
		err = cmd.Wait()
		if run < kills {
			if finished {
				t.Fatalf("run %d finished before it was killed (%+v): the kills did not land mid-run", run, last)
			}
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("run %d ended without being killed: %v", run, err)
			}
			t.Logf("run %d: killed %v after its first own commit, at %+v (%v after)", run, killAfter, last, time.Since(progressed).Round(time.Millisecond))
			continue
		}
		if err != nil || !finished {
			t.Fatalf("last run: %v (finished %v)", err, finished)
		}
		break
	}

	wantCopied, wantParked := map[string]bool{}, map[string]bool{}
	for i := range f.n {
		k := "k" + strconv.Itoa(i)
		if f.redrives(i) >= 3 {
			wantParked[k] = true
		} else {
			wantCopied[k] = true
		}
	}
	if last.Done != int64(len(wantCopied)) || last.Parked != int64(len(wantParked)) {
		t.Errorf("final progress %+v, want %d copied and %d parked", last, len(wantCopied), len(wantParked))
	}
	checkExactly(t, keysIn(t, c, f.target, len(wantCopied)), wantCopied, f.target)
	checkExactly(t, keysIn(t, c, ParkedTopic(f.dlq), len(wantParked)), wantParked, ParkedTopic(f.dlq))
}
