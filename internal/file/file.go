// Package file holds the file domain: a record of bytes kept in the
// gateway's file store, uploaded by a user or collected from a task's outputs.
package file

import (
	"net/url"
	"time"
)

// File is one stored file. Its bytes live in the blob store under ID.
type File struct {
	ID          string    `json:"fileId"`
	Owner       string    `json:"owner"`
	TaskID      string    `json:"taskId,omitempty"`
	NodeID      string    `json:"nodeId,omitempty"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"contentType"`
	Size        int64     `json:"size"`
	CreatedAt   time.Time `json:"createdAt"`
	// Pinned keeps the file from retention.
	Pinned bool `json:"pinned"`
}

// URL is the public URL of a stored file: base (the gateway's public base
// URL, "" for a path relative to it), then /files/{id}/{name}.
func URL(base, id, name string) string {
	return base + "/files/" + id + "/" + url.PathEscape(name)
}
