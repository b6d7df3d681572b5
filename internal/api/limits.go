package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// The limits of config.Limits as the API applies them: size limits to
// everyone (413), quotas to users only (429 quota_exceeded). Every answer
// names the limit in data.limit, with its value in data.max.

// limitData is the data of an answer that names a limit.
type limitData struct {
	Limit string `json:"limit"`
	Max   int64  `json:"max"`
	// Used is what the user holds, for the stored bytes quota.
	Used  int64  `json:"used,omitempty"`
	Field string `json:"field,omitempty"`
}

// quotaError is the 429 of a quota.
func quotaError(limit string, max, used int64, msg string) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "quota_exceeded", Message: msg,
		Data: limitData{Limit: limit, Max: max, Used: used}}
}

// pendingQuotaError is the 429 of limits.maxPendingPerUser.
func pendingQuotaError(max int) *Error {
	return quotaError("limits.maxPendingPerUser", int64(max), 0, fmt.Sprintf(
		"You have %d pending tasks, the most allowed (limits.maxPendingPerUser); submit more once some have run, or cancel some.", max))
}

// storedQuotaError is the 429 of limits.maxStoredBytesPerUser.
func storedQuotaError(max, used int64) *Error {
	return quotaError("limits.maxStoredBytesPerUser", max, used, fmt.Sprintf(
		"Your files would take more than %d bytes, the most allowed (limits.maxStoredBytesPerUser); you hold %d. Delete some files first.", max, used))
}

// taskBodyLimit is the size limit of POST /api/tasks: the smaller of
// limits.maxTaskBytes and server.maxBodyBytes, with the key that set it.
func (s *Server) taskBodyLimit(lim config.Limits) (int64, string) {
	if body := s.maxBody(); body < lim.MaxTaskBytes {
		return body, "server.maxBodyBytes"
	}
	return lim.MaxTaskBytes, "limits.maxTaskBytes"
}

// bodyLimitError names the limit of a body over it; other errors pass.
func bodyLimitError(err error, key string) error {
	var maxErr *http.MaxBytesError
	if !errors.As(err, &maxErr) {
		return err
	}
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
		Message: fmt.Sprintf("The request body is larger than %d bytes (%s).", maxErr.Limit, key),
		Data:    limitData{Limit: key, Max: maxErr.Limit}}
}

// tooManyNodes is the 413 of a workflow over limits.maxNodes.
func tooManyNodes(max int, msg string) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "workflow_too_large", Message: msg,
		Data: limitData{Limit: "limits.maxNodes", Max: int64(max), Field: "workflow"}}
}

// storedRoom is how many more bytes owner may store under
// limits.maxStoredBytesPerUser, and what they hold: room -1 is no bound
// (admins, or no quota); a 429 when the owner is at or past the quota.
func (s *Server) storedRoom(ctx context.Context, owner string, admin bool, lim config.Limits) (room, used int64, err error) {
	max := lim.MaxStoredBytesPerUser
	if admin || max == config.NoQuota {
		return -1, 0, nil
	}
	u, err := s.deps.Store.UsageGet(ctx, &store.UsageGetParams{Owner: owner})
	if err != nil {
		return 0, 0, err
	}
	if u.StoredBytes >= max {
		return 0, u.StoredBytes, storedQuotaError(max, u.StoredBytes)
	}
	return max - u.StoredBytes, u.StoredBytes, nil
}

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
