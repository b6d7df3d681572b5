package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// taskFolder is the folder of a task's files on its instance: its uploads
// go to input/<folder>, its outputs under output/<folder>. The instance's
// folders are shared by every task run there, and task ids are shown to
// other users, so the name is derived from the task id with the server key,
// like output file ids: the same for every attempt of the task, and
// unguessable without the key.
func (d *Dispatcher) taskFolder(taskID string) string {
	mac := hmac.New(sha256.New, d.opts.FileIDKey)
	mac.Write([]byte("task-folder\x00" + taskID))
	return "comfyfleet/" + hex.EncodeToString(mac.Sum(nil)[:16])
}
