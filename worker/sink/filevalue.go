package sink

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// fileValueRefresh is how often a credential file is read again: Kubernetes
// updates a mounted Secret in place (an atomic symlink swap) within about a
// minute of a change, and a rotated token must be picked up without a restart.
const fileValueRefresh = 10 * time.Second

// fileValue is the trimmed content of a mounted Secret file, read again at
// most every fileValueRefresh.
type fileValue struct {
	path string
	mu   sync.Mutex
	val  string
	err  error
	at   time.Time
}

func newFileValue(path string) *fileValue { return &fileValue{path: path} }

func (f *fileValue) get() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); f.at.IsZero() || now.Sub(f.at) >= fileValueRefresh {
		b, err := os.ReadFile(f.path)
		switch {
		case err != nil && f.val != "":
			// Keep the last good value through a swap in progress.
		case err != nil:
			f.err = fmt.Errorf("read credentials: %w", err)
		default:
			f.val, f.err = strings.TrimRight(string(b), "\r\n"), nil
		}
		f.at = now
	}
	return f.val, f.err
}
