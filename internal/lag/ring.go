package lag

// ring is a fixed-capacity buffer that keeps the newest values: pushing into
// a full ring overwrites the oldest. It keeps the memory of every history in
// this package bounded no matter how long the operator runs.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest value
	n     int
}

func newRing[T any](capacity int) ring[T] {
	return ring[T]{buf: make([]T, max(capacity, 1))}
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th value, 0 being the oldest.
func (r *ring[T]) at(i int) T { return r.buf[(r.start+i)%len(r.buf)] }

// newest returns the newest value for in-place update; the ring must not be
// empty.
func (r *ring[T]) newest() *T { return &r.buf[(r.start+r.n-1)%len(r.buf)] }

func (r *ring[T]) push(v T) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = v
		r.n++
		return
	}
	r.buf[r.start] = v
	r.start = (r.start + 1) % len(r.buf)
}

func (r *ring[T]) reset() {
	clear(r.buf)
	r.start, r.n = 0, 0
}

// values returns a copy of the values, oldest first.
func (r *ring[T]) values() []T {
	out := make([]T, r.n)
	for i := range out {
		out[i] = r.at(i)
	}
	return out
}
