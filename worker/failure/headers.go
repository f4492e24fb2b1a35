package failure

// Headers Sluice adds to records it writes to retry and dead-letter topics, and
// that a redrive (StreamReplay) reads and writes. Each has one meaning;
// docs/worker.md lists them. They live here, beside the error classes they
// carry, so that the operator's redrive reads them without the worker.
const (
	// HeaderOriginalTopic, -Partition, -Offset and -Timestamp locate the record in
	// the source topic. They stay the same through every retry and redrive, so the
	// default idempotency key ("<topic>/<partition>/<offset>") does too.
	HeaderOriginalTopic     = "sluice-original-topic"
	HeaderOriginalPartition = "sluice-original-partition"
	HeaderOriginalOffset    = "sluice-original-offset"
	// HeaderOriginalTimestamp is the source record's timestamp (RFC 3339, UTC).
	HeaderOriginalTimestamp = "sluice-original-timestamp"
	// HeaderErrorClass is "transient" or "poison".
	HeaderErrorClass = "sluice-error-class"
	// HeaderErrorMessage is the last error, truncated to MaxErrorMessageBytes.
	HeaderErrorMessage = "sluice-error-message"
	// HeaderAttempt counts failed attempts so far (1 after the first failure).
	HeaderAttempt = "sluice-attempt"
	// HeaderFirstFailure and HeaderLastFailure are RFC 3339 UTC times.
	HeaderFirstFailure = "sluice-first-failure"
	HeaderLastFailure  = "sluice-last-failure"
	// HeaderDueAt (retry topics only) is when the record may be processed again.
	HeaderDueAt = "sluice-due-at"

	// HeaderRedriveCount counts how many times a StreamReplay sent the record
	// back. The worker keeps it as it is through retries and into the
	// dead-letter topic (it is not one of the headers it rewrites), so the next
	// redrive sees it and parks a record that keeps failing instead of looping.
	HeaderRedriveCount = "sluice-redrive-count"
	// HeaderRedrivenBy is "<namespace>/<name>" of the last StreamReplay that
	// sent the record back.
	HeaderRedrivenBy = "sluice-redriven-by"
)

// MaxErrorMessageBytes bounds the error message header.
const MaxErrorMessageBytes = 4096
