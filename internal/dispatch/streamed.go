package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/task"
	"github.com/comfyfleet/comfyfleet/internal/workflow"
)

// classSaveImageWebsocket is the output node that sends its images over
// the WebSocket only: as PNG preview frames while it executes, with no UI
// output, so /history lists nothing and /view has nothing to fetch.
const classSaveImageWebsocket = "SaveImageWebsocket"

// maxStreamedBytes bounds the SaveImageWebsocket images one run holds in
// memory until the task completes and they are stored.
const maxStreamedBytes = 128 << 20

// streamed is what a run receives in binary frames: the images of its
// SaveImageWebsocket nodes, kept until the run completes, and sampler
// previews, handed to the preview relay. The driver's read loop feeds it
// (take, disconnected); the collector reads it once the prompt is done.
type streamed struct {
	taskID, owner string
	saveNodes     map[string]bool // ids of the prompt's SaveImageWebsocket nodes
	limit         int
	previews      *previewRelay // nil: previews are dropped

	// mu guards the fields below.
	mu      sync.Mutex
	images  map[string][]streamedImage // by node, in arrival order
	size    int
	running string          // the SaveImageWebsocket node executing, if any
	done    map[string]bool // SaveImageWebsocket nodes that finished on this connection
	problem *task.Error     // why the images cannot be complete; nil if they are
}

// streamedImage is one image a SaveImageWebsocket node sent.
type streamedImage struct {
	format string // "png" (the node's only format), "jpeg" or "webp"
	data   []byte
}

// newStreamed prepares a run of t. A reattached run started after the
// prompt was submitted, so any image sent before cannot be had.
func newStreamed(t *task.Task, reattach bool, previews *previewRelay) *streamed {
	s := &streamed{
		taskID: t.ID, owner: t.Owner, saveNodes: map[string]bool{}, limit: maxStreamedBytes, previews: previews,
		images: map[string][]streamedImage{}, done: map[string]bool{},
	}
	if !bytes.Contains(t.Workflow, []byte(classSaveImageWebsocket)) {
		return s // the common case, without parsing the workflow again
	}
	p, err := workflow.Parse(t.Workflow) // params never change a class
	if err != nil {
		return s
	}
	for id, n := range p {
		if n.ClassType == classSaveImageWebsocket {
			s.saveNodes[id] = true
		}
	}
	if reattach && len(s.saveNodes) > 0 {
		s.problem = lostError("the gateway restarted or took over the instance while the task ran")
	}
	return s
}

// take follows one event of the run's prompt. It reports whether the event
// was a binary frame, which it consumes: images must not wait in the run's
// event queue.
func (s *streamed) take(ev comfy.Event) bool {
	switch ev.Type {
	case comfy.EventExecuting, comfy.EventExecutionSuccess, comfy.EventExecutionError, comfy.EventExecutionInterrupted:
		s.executing(ev)
		if ev.NodeNull && s.previews != nil {
			s.previews.forget(s.taskID)
		}
		return false
	case comfy.EventBinary:
	default:
		return false
	}
	if ev.BinaryType != comfy.BinaryPreviewImage && ev.BinaryType != comfy.BinaryPreviewImageWithMetadata {
		return true
	}
	if s.saveNodes[ev.Node] {
		s.keep(ev)
	} else if s.previews != nil {
		s.previews.offer(s.taskID, s.owner, ev)
	}
	return true
}

// executing notes which SaveImageWebsocket node runs: ComfyUI runs one node
// at a time, so any later message of the prompt means it finished.
func (s *streamed) executing(ev comfy.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running != "" {
		s.done[s.running] = true
		s.running = ""
	}
	if ev.Type == comfy.EventExecuting && s.saveNodes[ev.Node] {
		s.running = ev.Node
	}
}

// keep stores an image of a SaveImageWebsocket node, within the limit.
func (s *streamed) keep(ev comfy.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.problem != nil {
		return
	}
	var msg string
	switch {
	case ev.Image == nil:
		msg = fmt.Sprintf("node %s sent an image of %d MiB; the gateway keeps images of up to %d MiB", ev.Node, ev.ImageSize>>20, comfy.MaxImage>>20)
	case s.size+ev.ImageSize > s.limit:
		msg = fmt.Sprintf("node %s sent more image data (%d MiB so far) than the gateway keeps for one task (%d MiB)",
			ev.Node, (s.size+ev.ImageSize)>>20, s.limit>>20)
	}
	if msg != "" {
		s.problem = &task.Error{Type: task.ErrorTypeOutput, NodeID: ev.Node, NodeType: classSaveImageWebsocket, Message: msg}
		s.images = nil
		return
	}
	s.size += ev.ImageSize
	s.images[ev.Node] = append(s.images[ev.Node], streamedImage{format: ev.ImageFormat, data: ev.Image})
}

// disconnected notes that the connection dropped: frames sent until the
// next one opens are gone, so a SaveImageWebsocket node that has not
// finished yet may lose images (ComfyUI buffers nothing for a client that
// is away).
func (s *streamed) disconnected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.problem != nil {
		return
	}
	for id := range s.saveNodes {
		if !s.done[id] {
			s.problem = lostError("the connection to the instance dropped while the task ran")
			s.images = nil
			return
		}
	}
}

func lostError(why string) *task.Error {
	return &task.Error{
		Type: task.ErrorTypeOutputLost,
		Message: why + ": images a SaveImageWebsocket node sends over the WebSocket may have been missed, " +
			"and ComfyUI keeps no copy of them; submit the task again",
	}
}

// result returns the kept images by node (nodes sorted), or the reason
// they are incomplete. Call it once the prompt is done.
func (s *streamed) result() ([]string, map[string][]streamedImage, *task.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.problem != nil {
		return nil, nil, s.problem
	}
	nodes := make([]string, 0, len(s.images))
	for id := range s.images {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	return nodes, s.images, nil
}

// storeStreamed writes the images the run received over the WebSocket to
// the file store, as "<node>_<index>.<ext>" of type "images", and adds
// them to res after the files from /history, and their records to recs.
// False means the task ended (failed, as ended says; nil if that failed
// too) or the gateway is shutting down.
func (d *Dispatcher) storeStreamed(ctx context.Context, t *task.Task, entry *comfy.HistoryEntry, nodes []string, images map[string][]streamedImage, res *task.Result, recs []*file.File, also func() []event.Event) (_ []*file.File, ended *task.Task, ok bool) {
	base := d.current().PublicBaseURL
	for _, nodeID := range nodes {
		first := len(entry.Outputs[nodeID].Files()) // ids continue after the node's /history files
		for i, img := range images[nodeID] {
			out, rec, err := d.storeImage(ctx, t, nodeID, first+i, fmt.Sprintf("%s_%d.%s", nodeID, i, extension(img.format)), img.data, base)
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, false
				}
				return nil, d.finishCollected(ctx, t, task.StatusFailed, nil, &task.Error{
					Type: task.ErrorTypeOutput, Message: fmt.Sprintf("image %d of node %s could not be stored: %v", i, nodeID, err),
				}, recs, also), false
			}
			res.Files = append(res.Files, out.URL)
			res.Outputs[nodeID] = append(res.Outputs[nodeID], out)
			recs = append(recs, rec)
		}
	}
	return recs, nil, true
}

// storeImage writes one image with the id of output i of nodeID.
func (d *Dispatcher) storeImage(ctx context.Context, t *task.Task, nodeID string, i int, name string, data []byte, base string) (task.Output, *file.File, error) {
	id := d.fileID(t.ID, nodeID, i)
	name = blob.SanitizeFilename(name)
	size, err := d.opts.Blob.Put(ctx, id, bytes.NewReader(data), 0)
	if err != nil {
		return task.Output{}, nil, err
	}
	rec := &file.File{
		ID: id, Owner: t.Owner, TaskID: t.ID, NodeID: nodeID, Filename: name,
		ContentType: blob.ContentType(name, data), Size: size, CreatedAt: time.Now(),
	}
	return task.Output{URL: file.URL(base, id, name), Filename: name, Type: "output", Kind: "images", NodeID: nodeID, FileID: id}, rec, nil
}

// extension is the file extension of an image format ("" is PNG, the only
// one SaveImageWebsocket writes).
func extension(format string) string {
	switch format {
	case "jpeg":
		return "jpg"
	case "webp":
		return "webp"
	}
	return "png"
}
