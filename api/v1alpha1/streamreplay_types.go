package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplayFrom is the topic (or topics) a replay reads.
// +kubebuilder:validation:Enum=DeadLetters;Source;RetryTopics
type ReplayFrom string

const (
	// ReplayFromDeadLetters reads the pipeline's dead-letter topic.
	ReplayFromDeadLetters ReplayFrom = "DeadLetters"
	// ReplayFromSource reads the pipeline's source topic ("replay last Tuesday").
	ReplayFromSource ReplayFrom = "Source"
	// ReplayFromRetryTopics reads every retry topic of the pipeline.
	ReplayFromRetryTopics ReplayFrom = "RetryTopics"
)

// ReplayMode is what a replay does with the records it selects.
// +kubebuilder:validation:Enum=Redrive;Rewind;Reprocess
type ReplayMode string

const (
	// ReplayModeRedrive copies the selected records to spec.target, where the
	// running pipeline processes them again.
	ReplayModeRedrive ReplayMode = "Redrive"
	// ReplayModeRewind moves the pipeline's consumer group back on its source
	// topic (to select.since, or to select.partitions[].from): the workers are
	// held at zero until the group is empty, its offsets (and, for ExactlyOnce
	// delivery with the postgres sink, the offsets stored in the database) are
	// set, and the workers come back and read on from there. Nothing is
	// copied.
	ReplayModeRewind ReplayMode = "Rewind"
	// ReplayModeReprocess runs the selected records through the pipeline's
	// sink directly, in a Job of the worker image (the pipeline's pod
	// template: image, Secrets, service account), with the pipeline's
	// idempotency key: a dead letter keeps the key of its source record, so an
	// idempotent sink sees no second effect. Nothing is copied to Kafka,
	// except that a record read from the source or retry topics that fails
	// again goes to the dead-letter topic. The Job resumes from the position
	// it committed after each acknowledged batch. AtLeastOnce pipelines only
	// (an ExactlyOnce one keeps exactly-once with offsets and transactions,
	// not keys: use Rewind).
	ReplayModeReprocess ReplayMode = "Reprocess"
)

// ReplayTarget is the topic a redrive copies to.
// +kubebuilder:validation:Enum=RetryTopic;Source
type ReplayTarget string

const (
	// ReplayTargetRetryTopic is the pipeline's first retry topic: a copy is due
	// at once and gets the pipeline's retries again if it fails.
	ReplayTargetRetryTopic ReplayTarget = "RetryTopic"
	// ReplayTargetSource is the pipeline's source topic: every consumer of that
	// topic sees the copy, not only this pipeline.
	ReplayTargetSource ReplayTarget = "Source"
)

// Defaults of a StreamReplay.
const (
	DefaultMaxRedrives int32 = 3
)

// StreamReplaySpec asks to send records of a pipeline's topics back through it:
// "fix the bug, then redrive the dead letters" or "replay last Tuesday". The
// topics' end offsets are fixed when the replay starts, so every replay ends,
// and each selected record is copied exactly once, also across crashes and
// operator restarts (docs/replay.md).
//
// +kubebuilder:validation:XValidation:rule="!(self.from == 'Source' && self.target == 'Source')",message="target Source can't be used with from Source: the replay would copy the source topic into itself; use target RetryTopic",fieldPath=".target"
// +kubebuilder:validation:XValidation:rule="!(self.from == 'RetryTopics' && self.target == 'RetryTopic')",message="target RetryTopic can't be used with from RetryTopics: the first retry topic is one of the topics read, and its records would be processed twice; use target Source",fieldPath=".target"
// +kubebuilder:validation:XValidation:rule="self.from != 'Source' || !has(self.select.errorClasses) && !has(self.select.messageContains) && !has(self.select.originalPartition) && !has(self.select.originalOffsets)",message="select.errorClasses, messageContains, originalPartition and originalOffsets match Sluice's failure headers, which only records in the dead-letter and retry topics have; from Source selects by time and offsets",fieldPath=".select"
// +kubebuilder:validation:XValidation:rule="self.mode != 'Rewind' || self.from == 'Source'",message="mode Rewind moves the pipeline's consumer group on its source topic: from must be Source",fieldPath=".from"
// +kubebuilder:validation:XValidation:rule="self.mode != 'Rewind' || has(self.select.since) || has(self.select.partitions) && self.select.partitions.all(p, has(p.from))",message="mode Rewind needs the position to go back to: select.since (a time), or select.partitions with from (an offset) on each",fieldPath=".select"
// +kubebuilder:validation:XValidation:rule="self.mode != 'Rewind' || !has(self.select.until) && !has(self.select.limit) && (!has(self.select.partitions) || self.select.partitions.all(p, !has(p.to)))",message="a rewind sets where the pipeline resumes and it reads on from there: select.until, select.limit and select.partitions[].to don't apply to mode Rewind",fieldPath=".select"
// +kubebuilder:validation:XValidation:rule="self.mode != 'Rewind' || !has(self.rateLimit) && !has(self.maxRedrives)",message="rateLimit and maxRedrives apply to copies, and mode Rewind copies nothing (the pipeline's own rateLimit paces what it reads again)",fieldPath=".mode"
// +kubebuilder:validation:XValidation:rule="self.mode != 'Reprocess' || !has(self.maxRedrives)",message="maxRedrives applies to copies, and mode Reprocess copies nothing: it writes the selected records to the pipeline's sink",fieldPath=".maxRedrives"
// +kubebuilder:validation:XValidation:rule="!has(self.truncate) || !self.truncate || self.from == 'DeadLetters' && self.mode == 'Redrive' && !(has(self.dryRun) && self.dryRun)",message="truncate deletes redriven dead letters: it needs from DeadLetters, mode Redrive and no dryRun",fieldPath=".truncate"
// +kubebuilder:validation:XValidation:rule="oldSelf == self",message="a StreamReplay's spec can't be changed once created (it describes one run): create another StreamReplay"
type StreamReplaySpec struct {
	// Pipeline is the name of the StreamPipeline, in this namespace, whose
	// topics are read and whose connection settings and Secrets are used.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Pipeline string `json:"pipeline"`

	// From is what to read: the dead-letter topic (default), the source topic,
	// or the retry topics.
	// +kubebuilder:default=DeadLetters
	// +optional
	From ReplayFrom `json:"from,omitempty"`

	// Mode is what to do with the selected records. Redrive copies them to
	// target; Rewind (from Source only) moves the pipeline's consumer group
	// back to select.since or select.partitions[].from, so the pipeline
	// processes everything after that point again; Reprocess writes them to
	// the pipeline's sink from a Job of the worker image.
	// +kubebuilder:default=Redrive
	// +optional
	Mode ReplayMode `json:"mode,omitempty"`

	// Target is where Redrive copies to: the pipeline's first retry topic
	// (default; the copy is due at once) or its source topic. Rewind ignores
	// it.
	// +kubebuilder:default=RetryTopic
	// +optional
	Target ReplayTarget `json:"target,omitempty"`

	// Select narrows the records; empty selects everything up to the end
	// offsets at the start of the replay.
	// +kubebuilder:default={}
	// +optional
	Select ReplaySelection `json:"select,omitzero"`

	// DryRun counts what matches (per partition and, for dead letters, per
	// error class) and copies nothing.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// RateLimit caps the records per second the replay copies, so a redrive
	// does not stampede the downstream it just recovered. 0 or unset: no cap.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	RateLimit *int32 `json:"rateLimit,omitempty"`

	// Truncate, after the redrive is complete (every copy committed), deletes
	// the redriven dead letters from the dead-letter topic (Kafka
	// DeleteRecords): on each partition, from its start up to the first record
	// the selection did not take, so nothing that was not copied (or parked)
	// is ever deleted. With a selection that skips the partition's first
	// record, that partition is left whole. Only from DeadLetters.
	// +optional
	Truncate bool `json:"truncate,omitempty"`

	// MaxRedrives is how many times a record may be redriven: a selected
	// record that was sent back this many times already (the
	// sluice-redrive-count header) is copied to "<topic>.parked" instead, so a
	// record that keeps failing does not loop. Default 3.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxRedrives *int32 `json:"maxRedrives,omitempty"`
}

// ReplaySelection narrows the records a replay reads. Every field that is set
// must match.
//
// +kubebuilder:validation:XValidation:rule="!has(self.since) || !has(self.until) || timestamp(self.since) < timestamp(self.until)",message="select.since must be before select.until",fieldPath=".since"
type ReplaySelection struct {
	// Since selects records whose timestamp is at or after this time.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`

	// Until selects records whose timestamp is before this time.
	// +optional
	Until *metav1.Time `json:"until,omitempty"`

	// Partitions limits the replay to these partitions of the topic read, each
	// with an optional offset range. A partition the topic does not have is an
	// error in status (Failed, reason InvalidSelection).
	// +kubebuilder:validation:MaxItems=1024
	// +listType=map
	// +listMapKey=partition
	// +optional
	Partitions []ReplayPartitionRange `json:"partitions,omitempty"`

	// ErrorClasses selects dead letters (and retry records) of these classes
	// (the sluice-error-class header).
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	ErrorClasses []ReplayErrorClass `json:"errorClasses,omitempty"`

	// MessageContains selects records whose error message (the
	// sluice-error-message header) contains this text.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	MessageContains string `json:"messageContains,omitempty"`

	// OriginalPartition selects records that came from this partition of the
	// source topic (the sluice-original-partition header).
	// +kubebuilder:validation:Minimum=0
	// +optional
	OriginalPartition *int32 `json:"originalPartition,omitempty"`

	// OriginalOffsets selects records whose source offset (the
	// sluice-original-offset header) is in this range.
	// +optional
	OriginalOffsets *OffsetRange `json:"originalOffsets,omitempty"`

	// Limit caps the records selected. Which ones is fixed when the replay
	// starts: the first matches of each partition in offset order, partitions
	// in ascending order, so a resumed replay selects the same records.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Limit *int64 `json:"limit,omitempty"`
}

// ReplayErrorClass is a Sluice error class.
// +kubebuilder:validation:Enum=transient;poison
type ReplayErrorClass string

// ReplayPartitionRange is one partition of the topic read, with an optional
// range of offsets.
type ReplayPartitionRange struct {
	// Partition number.
	// +kubebuilder:validation:Minimum=0
	// +required
	Partition int32 `json:"partition"`

	// OffsetRange within the partition; unset: all of it.
	OffsetRange `json:",inline"`
}

// OffsetRange is a range of offsets, both ends included; an unset end is open.
//
// +kubebuilder:validation:XValidation:rule="!has(self.from) || !has(self.to) || self.from <= self.to",message="from must not be greater than to",fieldPath=".from"
type OffsetRange struct {
	// From is the first offset selected.
	// +kubebuilder:validation:Minimum=0
	// +optional
	From *int64 `json:"from,omitempty"`

	// To is the last offset selected.
	// +kubebuilder:validation:Minimum=0
	// +optional
	To *int64 `json:"to,omitempty"`
}

// ReplayPhase is where a replay is in its life.
type ReplayPhase string

const (
	ReplayPhasePending  ReplayPhase = "Pending"
	ReplayPhaseRunning  ReplayPhase = "Running"
	ReplayPhaseComplete ReplayPhase = "Complete"
	ReplayPhaseFailed   ReplayPhase = "Failed"
)

// Condition types of a StreamReplay: Complete and Failed, as a Job's, so
// `kubectl wait --for=condition=Complete` works.
const (
	ConditionComplete = "Complete"
	ConditionFailed   = "Failed"
)

// StreamReplayStatus is the progress of a replay.
type StreamReplayStatus struct {
	// ObservedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase: Pending, Running, Complete or Failed.
	// +optional
	Phase ReplayPhase `json:"phase,omitempty"`

	// Conditions: Complete and Failed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Snapshot is what the replay reads, fixed when it starts: each partition
	// of each topic read, from its first selected offset to its end offset
	// (excluded) at that time. Records that arrive later, such as a redriven
	// record that fails again, are not part of this replay. For a rewind: each
	// partition of the source topic, Start the offset the group is set to,
	// End the end offset once the workers had stopped.
	// +kubebuilder:validation:MaxItems=10000
	// +optional
	Snapshot []ReplaySnapshotPartition `json:"snapshot,omitempty"`

	// Target is the topic the copies go to.
	// +optional
	Target string `json:"target,omitempty"`

	// ProgressGroup is the consumer group that holds the replay's position:
	// it commits in the same Kafka transaction as the copies, so a restarted
	// replay resumes where the last committed copy left off. For Reprocess,
	// the Job commits it after each batch the sink acknowledged, with the
	// partition's counts.
	// +optional
	ProgressGroup string `json:"progressGroup,omitempty"`

	// Job is the Job that runs a Reprocess.
	// +optional
	Job string `json:"job,omitempty"`

	// Matched is how many records the selection matched (known at the end of
	// a dry run, and as soon as the snapshot is taken when select.limit is set).
	// +optional
	Matched *int64 `json:"matched,omitempty"`

	// MatchedByClass counts the matched dead letters per error class.
	// +optional
	MatchedByClass map[string]int64 `json:"matchedByClass,omitempty"`

	// Done is how many selected records were copied (committed) to the target;
	// for a rewind, how many records the pipeline reads again once it is
	// Complete; for a reprocess, how many the sink took.
	// +optional
	Done int64 `json:"done"`

	// Parked is how many selected records were copied to "<topic>.parked"
	// instead, having reached spec.maxRedrives.
	// +optional
	Parked int64 `json:"parked"`

	// FailedAgain is how many of the redrive's copies came back to the
	// pipeline's dead-letter topic (failed again through all their retries),
	// counted by their sluice-redriven-by header; kept current while the
	// redrive runs its course: from Complete until every copy had time to go
	// through the retry topics (the retry backoffs plus 5 minutes). For
	// Reprocess: how many selected records the sink refused again (after the
	// pipeline's retries, in place).
	// +optional
	FailedAgain *int64 `json:"failedAgain,omitempty"`

	// Truncated is how many offsets of the dead-letter topic the redrive
	// deleted after completing (spec.truncate); each partition's new start is
	// in snapshot[].truncatedTo.
	// +optional
	Truncated *int64 `json:"truncated,omitempty"`

	// StartTime is when the snapshot was taken.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// CompletionTime is when the replay reached Complete or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// Message says what happened last, in words.
	// +optional
	Message string `json:"message,omitempty"`
}

// ReplaySnapshotPartition is one partition a replay reads.
type ReplaySnapshotPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Start is the first offset read.
	Start int64 `json:"start"`
	// End is the end offset at the start of the replay (read_committed: the last
	// stable offset); the replay reads up to it, excluded.
	End int64 `json:"end"`
	// Matched is how many records of this partition the selection matched
	// (dry runs, and replays with select.limit). For a rewind: how many
	// records the pipeline reads again (Committed − Start).
	// +optional
	Matched *int64 `json:"matched,omitempty"`
	// Committed is, for a rewind, the group's position on this partition
	// before it (unset: the group had none). A partition whose Start is not
	// before it is left where it was: a rewind never skips records.
	// +optional
	Committed *int64 `json:"committed,omitempty"`
	// TruncatedTo is, with spec.truncate, the partition's start after the
	// redrive deleted what it copied.
	// +optional
	TruncatedTo *int64 `json:"truncatedTo,omitempty"`
}

// StreamReplay sends records of a StreamPipeline's dead-letter, retry or
// source topic back through the pipeline, once.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sr,categories=sluice
// +kubebuilder:printcolumn:name="Pipeline",type=string,JSONPath=`.spec.pipeline`
// +kubebuilder:printcolumn:name="From",type=string,JSONPath=`.spec.from`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matched`
// +kubebuilder:printcolumn:name="Done",type=integer,JSONPath=`.status.done`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Parked",type=integer,JSONPath=`.status.parked`,priority=1
// +kubebuilder:printcolumn:name="Failed-Again",type=integer,JSONPath=`.status.failedAgain`,priority=1
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.target`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
type StreamReplay struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec StreamReplaySpec `json:"spec"`

	// +optional
	Status StreamReplayStatus `json:"status,omitzero"`
}

// StreamReplayList is a list of StreamReplays.
//
// +kubebuilder:object:root=true
type StreamReplayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StreamReplay `json:"items"`
}

// RateLimitOr is spec.rateLimit, 0 for no cap.
func (r *StreamReplay) RateLimitOr() int32 { return Int32Or(r.Spec.RateLimit, 0) }

// MaxRedrivesOr is spec.maxRedrives with its default.
func (r *StreamReplay) MaxRedrivesOr() int32 { return Int32Or(r.Spec.MaxRedrives, DefaultMaxRedrives) }
