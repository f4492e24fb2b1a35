package worker

import (
	"slices"
	"testing"
)

// TestLanes drives the lane planner by hand: records (their lane by index),
// then rounds of take(n) and done, checking what each take hands out. A step
// may first add records (a refill), of which a stopped lane takes none.
func TestLanes(t *testing.T) {
	type step struct {
		add  []int   // a refill before the take: the lane of each new message
		take int     // take up to this many
		want []int32 // messages handed out
		done []int32 // lanes finished after the take
		stop []int32 // lanes stopped after the take
	}
	for _, tc := range []struct {
		name  string
		lanes []int // lane of each message, in offset order
		steps []step
	}{
		{
			name:  "one lane goes one record at a time, in order",
			lanes: []int{0, 0, 0},
			steps: []step{
				{take: 5, want: []int32{0}},
				{take: 5, want: nil, done: []int32{0}},
				{take: 5, want: []int32{1}, done: []int32{0}},
				{take: 5, want: []int32{2}, done: []int32{0}},
				{take: 5, want: nil},
			},
		},
		{
			name:  "lanes overlap; a batch holds each lane once",
			lanes: []int{0, 1, 0, 2, 1},
			steps: []step{
				{take: 5, want: []int32{0, 1, 3}, done: []int32{0, 1, 2}},
				{take: 5, want: []int32{2, 4}, done: []int32{0, 1}},
				{take: 5, want: nil},
			},
		},
		{
			name:  "take stops at n; a finished lane queues behind the others",
			lanes: []int{0, 0, 1, 2, 3},
			steps: []step{
				{take: 2, want: []int32{0, 2}, done: []int32{0}},
				{take: 2, want: []int32{3, 4}, done: []int32{1, 2, 3}},
				{take: 2, want: []int32{1}},
			},
		},
		{
			name:  "a refill's record waits behind its lane's record at the sink",
			lanes: []int{0},
			steps: []step{
				{take: 5, want: []int32{0}},
				{add: []int{0, 1}, take: 5, want: []int32{2}, done: []int32{0}},
				{take: 5, want: []int32{1}, done: []int32{0, 1}},
				{take: 5, want: nil},
			},
		},
		{
			name:  "a refill wakes a lane that ran dry",
			lanes: []int{0},
			steps: []step{
				{take: 5, want: []int32{0}, done: []int32{0}},
				{take: 5, want: nil},
				{add: []int{0}, take: 5, want: []int32{1}, done: []int32{0}},
			},
		},
		{
			name:  "a stopped lane takes no refill; the others go on",
			lanes: []int{0, 1},
			steps: []step{
				{take: 5, want: []int32{0, 1}, done: []int32{1}, stop: []int32{0}},
				{add: []int{0, 1}, take: 5, want: []int32{3}, done: []int32{1}},
				{take: 5, want: nil},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l lanes
			l.reset()
			n := int32(0)
			added := map[int32]int{} // message → lane
			refused := map[int32]bool{}
			add := func(id int) {
				l.grow(n + 1)
				for len(l.lanes) <= id {
					l.newLane()
				}
				added[n] = id
				if !l.add(int32(id), n) {
					refused[n] = true
				}
				n++
			}
			for _, id := range tc.lanes {
				add(id)
			}
			for i, s := range tc.steps {
				for _, id := range s.add {
					add(id)
				}
				got, ids := l.take(s.take, nil, nil)
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d: take(%d) = %v, want %v", i, s.take, got, s.want)
				}
				for j, m := range got {
					if int(ids[j]) != added[m] {
						t.Fatalf("step %d: message %d reported in lane %d, want %d", i, m, ids[j], added[m])
					}
					if refused[m] {
						t.Fatalf("step %d: message %d, refused by its stopped lane, was handed out", i, m)
					}
				}
				for _, id := range s.done {
					l.done(id)
				}
				for _, id := range s.stop {
					l.stop(id)
				}
			}
			var left []int32
			l.left(func(m int32) { left = append(left, m) })
			if len(left) != 0 {
				t.Errorf("messages never taken: %v", left)
			}
		})
	}
}
