package api

import (
	"fmt"
	"time"
)

// checkTimeout bounds the timeout a task asks for, in milliseconds: 0 is
// scheduler.taskTimeout, and at most scheduler.maxTaskTimeout. It is
// checked before the conversion to a time.Duration, which a large value
// would overflow.
func (s *Server) checkTimeout(ms int64) error {
	limit := time.Duration(s.deps.Config.Current().Scheduler.MaxTaskTimeout).Milliseconds()
	if ms < 0 || ms > limit {
		return fieldError("timeout", fmt.Sprintf(
			"must be a number of milliseconds from 0 (the configured default) to %d (scheduler.maxTaskTimeout)", limit))
	}
	return nil
}
