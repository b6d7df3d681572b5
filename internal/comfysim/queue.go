package comfysim

import (
	"cmp"
	"math"
	"strings"
)

// The prompt queue is a port of ComfyUI's PromptQueue (execution.py): a
// Python heapq list ordered by (number, prompt_id), a dict of running items,
// and a history dict in completion order. /queue shows the raw heap list,
// unsorted, exactly as Python's heapq leaves it, so the array order a client
// sees matches a real server given the same pushes and pops.

// priority is a queue item's number: the server's int counter (or its
// negation for front) or a client-supplied float.
type priority struct {
	v       float64
	isFloat bool
	i       int64
}

func intPriority(i int64) priority { return priority{v: float64(i), i: i} }

func floatPriority(f float64) priority { return priority{v: f, isFloat: true} }

// value is the JSON value ComfyUI echoes: an int or a float.
func (p priority) value() any {
	if p.isFloat {
		return p.v
	}
	return p.i
}

func (p priority) compare(q priority) int {
	if !p.isFloat && !q.isFloat {
		return cmp.Compare(p.i, q.i)
	}
	if math.IsNaN(p.v) || math.IsNaN(q.v) {
		return 0 // Python: neither < nor > holds
	}
	return cmp.Compare(p.v, q.v)
}

// queueItem is the tuple (number, prompt_id, prompt, extra_data, outputs_to_execute).
type queueItem struct {
	number  priority
	id      string
	graph   *graph
	extra   *obj
	outputs []string
	// encoded is the item's JSON array in Python layout, built once at enqueue.
	encoded rawJSON
}

func (it *queueItem) less(o *queueItem) bool {
	if c := it.number.compare(o.number); c != 0 {
		return c < 0
	}
	return strings.Compare(it.id, o.id) < 0
}

func (it *queueItem) encode() rawJSON {
	outs := make([]any, len(it.outputs))
	for i, o := range it.outputs {
		outs[i] = o
	}
	return rawJSON(encodePy([]any{it.number.value(), it.id, rawJSON(it.graph.encoded), it.extra, outs}))
}

// heapPush is heapq.heappush.
func heapPush(h []*queueItem, it *queueItem) []*queueItem {
	h = append(h, it)
	siftDown(h, 0, len(h)-1)
	return h
}

// heapPop is heapq.heappop.
func heapPop(h []*queueItem) ([]*queueItem, *queueItem) {
	last := h[len(h)-1]
	h = h[:len(h)-1]
	if len(h) == 0 {
		return h, last
	}
	top := h[0]
	h[0] = last
	siftUp(h, 0)
	return h, top
}

// heapify is heapq.heapify.
func heapify(h []*queueItem) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftUp(h, i)
	}
}

// siftDown is heapq._siftdown: move the item at pos up towards start.
func siftDown(h []*queueItem, start, pos int) {
	item := h[pos]
	for pos > start {
		parent := (pos - 1) >> 1
		if !item.less(h[parent]) {
			break
		}
		h[pos] = h[parent]
		pos = parent
	}
	h[pos] = item
}

// siftUp is heapq._siftup: bubble the smaller child up to a leaf, then siftDown.
func siftUp(h []*queueItem, pos int) {
	end, start := len(h), pos
	item := h[pos]
	child := 2*pos + 1
	for child < end {
		if right := child + 1; right < end && !h[child].less(h[right]) {
			child = right
		}
		h[pos] = h[child]
		pos = child
		child = 2*pos + 1
	}
	h[pos] = item
	siftDown(h, start, pos)
}

// historyEntry is one /history record, encoded once when written.
type historyEntry struct {
	id      string
	encoded rawJSON
}

// history is ComfyUI's history dict: completion order, a re-run of the same
// prompt_id keeps its first position, the oldest entry goes past the cap.
type history struct {
	order   []string
	entries map[string]*historyEntry
	max     int
}

func newHistory(max int) *history {
	return &history{entries: map[string]*historyEntry{}, max: max}
}

func (h *history) put(e *historyEntry) {
	if len(h.entries) > h.max && len(h.order) > 0 {
		h.remove(h.order[0])
	}
	if _, ok := h.entries[e.id]; !ok {
		h.order = append(h.order, e.id)
	}
	h.entries[e.id] = e
}

func (h *history) remove(id string) {
	if _, ok := h.entries[id]; !ok {
		return
	}
	delete(h.entries, id)
	for i, k := range h.order {
		if k == id {
			h.order = append(h.order[:i:i], h.order[i+1:]...)
			return
		}
	}
}

func (h *history) clear() {
	h.order = nil
	clear(h.entries)
}

// page is PromptQueue.get_history without a prompt_id.
func (h *history) page(maxItems *int, offset int) []*historyEntry {
	if offset < 0 && maxItems != nil {
		offset = len(h.order) - *maxItems
	}
	var out []*historyEntry
	for i, id := range h.order {
		if i >= offset {
			out = append(out, h.entries[id])
			if maxItems != nil && len(out) >= *maxItems {
				break
			}
		}
	}
	return out
}

// encodeHistory renders entries as the /history response object.
func encodeHistory(entries []*historyEntry) []byte {
	b := []byte{'{'}
	for i, e := range entries {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendPyString(b, e.id)
		b = append(b, ": "...)
		b = append(b, e.encoded...)
	}
	return append(b, '}')
}
