package lag

import "slices"

// Window keeps the last K samples of a consumer group: two for rates, K for
// the health verdict. It is bounded by K however long the operator runs.
type Window struct {
	samples ring[Sample]
}

// NewWindow returns a window of the last k samples (at least 1; health needs
// at least 2).
func NewWindow(k int) *Window {
	return &Window{samples: newRing[Sample](k)}
}

// Size is K, the number of samples the window keeps.
func (w *Window) Size() int { return len(w.samples.buf) }

// Len is the number of samples in the window, up to Size.
func (w *Window) Len() int { return w.samples.len() }

// Add appends a sample, dropping the oldest when the window is full. The
// sample is copied, so the caller may reuse its Partitions slice. A sample not
// newer than the latest one is dropped (false): out-of-order samples would
// make rates negative or infinite.
func (w *Window) Add(s Sample) bool {
	if latest, ok := w.Latest(); ok && !s.At.After(latest.At) {
		return false
	}
	s.Partitions = slices.Clone(s.Partitions)
	w.samples.push(s)
	return true
}

// Latest is the newest sample.
func (w *Window) Latest() (Sample, bool) {
	if w.samples.len() == 0 {
		return Sample{}, false
	}
	return w.samples.at(w.samples.len() - 1), true
}

// Previous is the sample before the newest, the baseline for Rates.
func (w *Window) Previous() (Sample, bool) {
	if w.samples.len() < 2 {
		return Sample{}, false
	}
	return w.samples.at(w.samples.len() - 2), true
}

// Samples returns the samples, oldest first. The slice is new; the samples'
// Partitions are shared with the window and must not be modified.
func (w *Window) Samples() []Sample { return w.samples.values() }

// Rates is Rates over the two newest samples.
func (w *Window) Rates() (ingest, process float64, ok bool) {
	prev, okPrev := w.Previous()
	cur, okCur := w.Latest()
	if !okPrev || !okCur {
		return 0, 0, false
	}
	return Rates(prev, cur)
}

// Health is Assess over the window, with K = Size.
func (w *Window) Health(from StartFrom) Health {
	return Assess(w.Samples(), w.Size(), from)
}
