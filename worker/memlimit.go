package worker

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// heapShareOfLimit is the part of the container's memory limit given to the Go
// heap as its soft limit (GOMEMLIMIT). The rest is for what the limit counts
// but the heap doesn't: goroutine stacks, the binary, the runtime's own
// structures and memory the OS has not taken back yet.
const heapShareOfLimit = 0.9

// SoftMemoryLimit returns the Go heap's soft limit for a container limit read
// from getenv(workerconfig.MemoryLimitEnv): 90% of it, so that under a backlog the garbage
// collector works harder before the kernel kills the pod for crossing its
// limit. It returns 0 (leave the runtime alone) when the variable is absent or
// when GOMEMLIMIT is set, which always wins.
func SoftMemoryLimit(getenv func(string) string) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	v := strings.TrimSpace(getenv(workerconfig.MemoryLimitEnv))
	if v == "" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("%s=%q: want the container's memory limit in bytes", workerconfig.MemoryLimitEnv, v)
	}
	return int64(float64(limit) * heapShareOfLimit), nil
}
