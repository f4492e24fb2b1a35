// Package lag turns samples of a consumer group's offsets into the numbers the
// operator reports and scales on: lag per partition, ingest and processing
// rates, time to drain, how far behind in time the group is, and whether it is
// stalled or stopped.
//
// Everything here is pure: the operator reads offsets with franz-go's kadm and
// the clock, and passes them in. Keeping the arithmetic away from the I/O lets
// the edge cases (no committed offset, offsets reset, a topic recreated,
// transaction markers) be pinned down by table tests instead of by a broker.
package lag
