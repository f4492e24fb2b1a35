package lag

import "time"

// NoOffset is the committed offset of a partition the group has never
// committed: kadm's FetchOffsetsForTopics fills such partitions with -1, and a
// partition missing from FetchOffsets' answer must be passed as NoOffset too.
const NoOffset int64 = -1

// PartitionOffsets is one sample of one partition.
type PartitionOffsets struct {
	Partition int32

	// Start is the log start offset (the earliest record still kept). It is
	// where a group with no committed offset begins when it starts from
	// Earliest, and the floor below which records are gone.
	Start int64

	// End is where the group's lag is measured to: the high watermark (kadm
	// ListEndOffsets) for a read_uncommitted consumer, the last stable offset
	// (kadm ListCommittedOffsets) for a read_committed one. See Compute for
	// why it matters with transactional producers.
	End int64

	// Committed is the group's committed offset (kadm FetchOffsets), the next
	// record it will read, or NoOffset (any negative value) when it has none.
	Committed int64
}

// HasCommit reports whether the group has a committed offset for the
// partition.
func (p PartitionOffsets) HasCommit() bool { return p.Committed >= 0 }

// Sample is the offsets of every partition of the source topic, read at one
// moment. Partitions are expected to be unique.
type Sample struct {
	At         time.Time
	Partitions []PartitionOffsets

	// Members is the number of live members of the consumer group; 0 means
	// nobody is consuming.
	Members int
}

// StartFrom says where a group with no committed offset begins. The values are
// those of the API's spec.source.startFrom; the type is redeclared here so that
// this package does not depend on the API.
type StartFrom string

// Start positions.
const (
	StartFromEarliest StartFrom = "Earliest"
	StartFromLatest   StartFrom = "Latest"
)
