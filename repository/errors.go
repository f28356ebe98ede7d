package repository

import (
	"context"
	"errors"
	"fmt"
)

// ErrUnavailable marks an error of the database itself (connection lost, server gone, lock
// wait, read-only), as opposed to an answer about the rows asked for: the same call may
// succeed once the database is back.
var ErrUnavailable = errors.New("database unavailable")

// ErrTooLarge marks a row larger than the database will ever accept.
var ErrTooLarge = errors.New("too large for the database")

// Unavailable marks err with ErrUnavailable unless it is nil, ErrNotFound or the end of the
// caller's context, which say nothing of the database's health.
func Unavailable(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrUnavailable), errors.Is(err, ErrTooLarge),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
