package worker

import "sync"

// batchMemory is what one partition's records of a poll go through the
// pipeline in. It is reused from poll to poll: allocated fresh, these few
// hundred kilobytes per poll were a large share of the worker's allocations
// and of its garbage collection work (see BENCHMARKS.md).
type batchMemory struct {
	msgs  []message
	chunk []*message
}

var batchMemoryPool = sync.Pool{New: func() any { return new(batchMemory) }}

// getBatchMemory returns memory for n messages: msgs of length n, chunk empty.
func getBatchMemory(n int) *batchMemory {
	m := batchMemoryPool.Get().(*batchMemory)
	if cap(m.msgs) < n {
		m.msgs = make([]message, n)
		m.chunk = make([]*message, 0, n)
	}
	m.msgs, m.chunk = m.msgs[:n], m.chunk[:0]
	return m
}

// release clears the messages (a pooled batch must not keep fetched records,
// and the memory behind them, alive) and returns the memory to the pool.
func (m *batchMemory) release() {
	clear(m.msgs)
	clear(m.chunk[:cap(m.chunk)])
	batchMemoryPool.Put(m)
}
