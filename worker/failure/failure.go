// Package failure classifies errors. Errors are values that decide routing: a
// poison pill goes straight to the dead-letter topic, a transient failure goes
// through the retry topics first. Sinks wrap their errors with Poison or
// Transient; anything unclassified is treated as transient, because retrying a
// record that could have succeeded is cheaper than parking one that could have.
package failure

import (
	"errors"
	"fmt"
)

// Class is the routing class of an error.
type Class string

const (
	// ClassTransient may succeed later: timeouts, 5xx, connection refused.
	ClassTransient Class = "transient"
	// ClassPoison will never succeed: undecodable, schema-invalid, 4xx "bad request".
	ClassPoison Class = "poison"
)

type classified struct {
	class Class
	err   error
}

func (e *classified) Error() string { return e.err.Error() }
func (e *classified) Unwrap() error { return e.err }

// Poison marks err as a poison pill.
func Poison(err error) error { return &classified{ClassPoison, err} }

// Poisonf is Poison(fmt.Errorf(...)).
func Poisonf(format string, args ...any) error { return Poison(fmt.Errorf(format, args...)) }

// Transient marks err as transient.
func Transient(err error) error { return &classified{ClassTransient, err} }

// Transientf is Transient(fmt.Errorf(...)).
func Transientf(format string, args ...any) error { return Transient(fmt.Errorf(format, args...)) }

// ClassOf returns the class of err ("" for a nil error). The outermost
// classification wins; unclassified errors, deadlines included, are transient.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	return ClassTransient
}
