package procstat

import (
	"os"
	"testing"
)

func TestReadsThisProcess(t *testing.T) {
	rss, err := PeakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("PeakRSS = %d, %v; want at least 1 MiB", rss, err)
	}
	buf := make([]int, 0)
	for i := range 1 << 22 { // burn some CPU
		buf = append(buf[:0], i)
	}
	if cpu, err := CPUTime(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("CPUTime = %v, %v", cpu, err)
	}
	if _, err := PeakRSS(-1); err == nil {
		t.Error("PeakRSS of no process: no error")
	}
}
