package comfysim

import (
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// POST /prompt and the queue, interrupt, free and history routes
// (server.py post_prompt, get_queue, post_queue, post_interrupt, post_free,
// get_history, post_history).

func (p *proc) getPrompt(w http.ResponseWriter, r *http.Request) error {
	p.mu.Lock()
	body := encodePy(p.queueInfo())
	p.mu.Unlock()
	writePy(w, http.StatusOK, body)
	return nil
}

func (p *proc) postPrompt(w http.ResponseWriter, r *http.Request) error {
	body, err := p.readBody(w, r)
	if err != nil {
		return err
	}
	rec := ReceivedPrompt{Time: time.Now(), Body: body}
	status, resp, err := p.submit(body, &rec)
	if err != nil {
		status = http500
	}
	rec.Status = status
	p.sim.recordPrompt(rec)
	if err != nil {
		return err
	}
	writePy(w, status, resp)
	return nil
}

// submit runs post_prompt's steps in ComfyUI's order: parse, number (the
// counter moves even for rejected prompts), prompt_id, validation,
// extra_data, enqueue.
func (p *proc) submit(body []byte, rec *ReceivedPrompt) (int, []byte, error) {
	v, spans, err := parsePyTop(body)
	if err != nil {
		return 0, nil, err
	}
	data, ok := v.(*obj)
	if !ok {
		return p.submitNonObject(v)
	}
	if s, ok := spans["prompt"]; ok {
		rec.Prompt = body[s[0]:s[1]]
	}
	rec.ClientID, _ = data.str("client_id")
	number, err := p.assignNumber(data)
	if err != nil {
		return 0, nil, err
	}
	if !data.has("prompt") {
		return http.StatusBadRequest, noPromptBody(), nil
	}
	id, bad := p.promptID(data)
	if bad != nil {
		return http.StatusBadRequest, bad, nil
	}
	rec.PromptID = id
	partial, hasPartial := data.get("partial_execution_targets")
	verdict, err := validatePrompt(p.sim.cat, p.sim.files, data.at("prompt"), partial, hasPartial)
	if err != nil {
		return 0, nil, err
	}
	extra, err := extraData(data)
	if err != nil {
		return 0, nil, err
	}
	if !verdict.ok {
		return http.StatusBadRequest, encodePy(newObj("error", verdict.err, "node_errors", verdict.nodeErrors)), nil
	}
	it := &queueItem{number: number, id: id, graph: newGraph(p.sim.cat, data.at("prompt").(*obj)), extra: extra, outputs: verdict.outputs}
	it.encoded = it.encode()
	p.put(it)
	return http.StatusOK, encodePy(newObj("prompt_id", id, "number", number.value(), "node_errors", verdict.nodeErrors)), nil
}

func noPromptBody() []byte {
	return encodePy(newObj("error", promptErr("no_prompt", "No prompt provided", "No prompt provided"), "node_errors", newObj()))
}

// submitNonObject handles a JSON body that is not an object: Python's `in`
// tests work on lists and strings, indexing them raises.
func (p *proc) submitNonObject(v any) (int, []byte, error) {
	for _, key := range []string{"number", "front"} {
		if _, found, err := member(v, key); err != nil || found {
			return 0, nil, &errServer{"body is not an object"}
		}
	}
	p.mu.Lock()
	p.counter++
	p.mu.Unlock()
	if _, found, err := member(v, "prompt"); err != nil || found {
		return 0, nil, &errServer{"body is not an object"}
	}
	return http.StatusBadRequest, noPromptBody(), nil
}

// member is Python's `key in v` followed by v[key] for a JSON value.
func member(v any, key string) (val any, found bool, err error) {
	switch t := v.(type) {
	case *obj:
		val, found = t.get(key)
		return val, found, nil
	case []any:
		for _, e := range t {
			if e == key {
				return nil, true, &errServer{"list indices must be integers"}
			}
		}
		return nil, false, nil
	case string:
		if strings.Contains(t, key) {
			return nil, true, &errServer{"string indices must be integers"}
		}
		return nil, false, nil
	}
	return nil, false, &errServer{"argument of type '" + pyTypeName(v) + "' is not iterable"}
}

// assignNumber is the priority rule: a client number as float, otherwise the
// counter (negated for front), and the counter moves on.
func (p *proc) assignNumber(data *obj) (priority, error) {
	if v, ok := data.get("number"); ok {
		f, exc := pyFloat(v)
		if exc != nil {
			return priority{}, &errServer{exc.msg}
		}
		return floatPriority(f), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.counter
	if pyTruthy(data.at("front")) {
		n = -n
	}
	p.counter++
	return intPriority(n), nil
}

// promptID picks the id: the client's (str()-coerced in v0.3.65, a
// canonical UUID with RequireUUIDPromptID) or a fresh uuid4.
func (p *proc) promptID(data *obj) (string, []byte) {
	v, ok := data.get("prompt_id")
	if !p.sim.opts.RequireUUIDPromptID {
		if !ok {
			return uuid.NewString(), nil
		}
		return pyStr(v), nil
	}
	if v == nil {
		return uuid.NewString(), nil
	}
	if s, isStr := v.(string); isStr && canonicalUUID(s) {
		return s, nil
	}
	return "", encodePy(newObj("error", promptErr("invalid_prompt_id", "prompt_id must be a valid UUID",
		"prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one"), "node_errors", newObj()))
}

// canonicalUUID is str(uuid.UUID(s)) == s.
func canonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// extraData builds extra_data with client_id copied in.
func extraData(data *obj) (*obj, error) {
	extra := newObj()
	if v, ok := data.get("extra_data"); ok {
		o, isObj := v.(*obj)
		if !isObj {
			return nil, &errServer{"extra_data is not an object"}
		}
		extra = o
	}
	if v, ok := data.get("client_id"); ok {
		extra.set("client_id", v)
	}
	return extra, nil
}

func (p *proc) getQueue(w http.ResponseWriter, r *http.Request) error {
	p.mu.Lock()
	running := []any{}
	if p.running != nil {
		running = append(running, p.running.encoded)
	}
	pending := make([]any, len(p.queue))
	for i, it := range p.queue {
		pending[i] = it.encoded
	}
	p.mu.Unlock()
	writePy(w, http.StatusOK, encodePy(newObj("queue_running", running, "queue_pending", pending)))
	return nil
}

// parseJSONBody is aiohttp's request.json(): the body must be UTF-8 JSON.
func (p *proc) parseJSONBody(w http.ResponseWriter, r *http.Request) (any, error) {
	body, err := p.readBody(w, r)
	if err != nil {
		return nil, err
	}
	return parsePy(body)
}

func (p *proc) postQueue(w http.ResponseWriter, r *http.Request) error {
	data, err := p.parseJSONBody(w, r)
	if err != nil {
		return err
	}
	if v, found, err := member(data, "clear"); err != nil {
		return err
	} else if found && pyTruthy(v) {
		p.mu.Lock()
		p.wipeQueue()
		p.mu.Unlock()
	}
	if v, found, err := member(data, "delete"); err != nil {
		return err
	} else if found {
		ids, err := iterate(v)
		if err != nil {
			return err
		}
		for _, id := range ids {
			p.deleteQueueItem(id)
		}
	}
	writeEmpty(w, http.StatusOK)
	return nil
}

// iterate is Python's `for x in v`.
func iterate(v any) ([]any, error) {
	switch t := v.(type) {
	case []any:
		return t, nil
	case *obj:
		return stringsToAny(t.keys), nil
	case string:
		var out []any
		for _, r := range t {
			out = append(out, string(r))
		}
		return out, nil
	}
	return nil, &errServer{"'" + pyTypeName(v) + "' object is not iterable"}
}

// wipeQueue is PromptQueue.wipe_queue. Caller holds mu.
func (p *proc) wipeQueue() {
	p.queue = nil
	p.queueUpdated()
}

// deleteQueueItem is delete_queue_item: pending items only, and a queue of
// one is wiped (two status broadcasts, as in ComfyUI).
func (p *proc) deleteQueueItem(id any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for x, it := range p.queue {
		if it.id != id {
			continue
		}
		if len(p.queue) == 1 {
			p.wipeQueue()
		} else {
			p.queue = append(p.queue[:x:x], p.queue[x+1:]...)
			heapify(p.queue)
		}
		p.queueUpdated()
		return
	}
}

// postInterrupt is the global or prompt_id-targeted interrupt.
func (p *proc) postInterrupt(w http.ResponseWriter, r *http.Request) error {
	body, err := p.readBody(w, r)
	if err != nil {
		return err
	}
	if !utf8.Valid(body) {
		return &errServer{"body is not UTF-8"}
	}
	var data any = newObj()
	if v, err := parsePy(body); err == nil {
		data = v
	}
	d, ok := data.(*obj)
	if !ok {
		return &errServer{"'" + pyTypeName(data) + "' object has no attribute 'get'"}
	}
	rec := Interrupt{Time: time.Now(), Running: p.runningID()}
	target := d.at("prompt_id")
	if pyTruthy(target) {
		rec.PromptID = pyStr(target)
		rec.Applied = rec.Running != "" && target == rec.Running
	} else {
		rec.Applied = true
	}
	if rec.Applied {
		p.interrupt()
	}
	p.sim.recordInterrupt(rec)
	writeEmpty(w, http.StatusOK)
	return nil
}

func (p *proc) postFree(w http.ResponseWriter, r *http.Request) error {
	data, err := p.parseJSONBody(w, r)
	if err != nil {
		return err
	}
	d, ok := data.(*obj)
	if !ok {
		return &errServer{"'" + pyTypeName(data) + "' object has no attribute 'get'"}
	}
	unload, free := pyTruthy(d.at("unload_models")), pyTruthy(d.at("free_memory"))
	if unload || free {
		p.setFlags(unload, free)
	}
	writeEmpty(w, http.StatusOK)
	return nil
}

func (p *proc) getHistory(w http.ResponseWriter, r *http.Request) error {
	q := query(r)
	var maxItems *int
	offset := -1
	if q.Has("max_items") {
		n, exc := strToInt(q.Get("max_items"))
		if exc != nil {
			return exc
		}
		m := goInt(n)
		maxItems = &m
	}
	if q.Has("offset") {
		n, exc := strToInt(q.Get("offset"))
		if exc != nil {
			return exc
		}
		offset = goInt(n)
	}
	p.mu.Lock()
	body := encodeHistory(p.hist.page(maxItems, offset))
	p.mu.Unlock()
	writePy(w, http.StatusOK, body)
	return nil
}

func (p *proc) getHistoryItem(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("prompt_id")
	p.mu.Lock()
	var entries []*historyEntry
	if e, ok := p.hist.entries[id]; ok {
		entries = append(entries, e)
	}
	p.mu.Unlock()
	writePy(w, http.StatusOK, encodeHistory(entries))
	return nil
}

func (p *proc) postHistory(w http.ResponseWriter, r *http.Request) error {
	data, err := p.parseJSONBody(w, r)
	if err != nil {
		return err
	}
	if v, found, err := member(data, "clear"); err != nil {
		return err
	} else if found && pyTruthy(v) {
		p.mu.Lock()
		p.hist.clear()
		p.mu.Unlock()
	}
	if v, found, err := member(data, "delete"); err != nil {
		return err
	} else if found {
		ids, err := iterate(v)
		if err != nil {
			return err
		}
		p.mu.Lock()
		for _, id := range ids {
			if s, ok := id.(string); ok {
				p.hist.remove(s)
			}
		}
		p.mu.Unlock()
	}
	writeEmpty(w, http.StatusOK)
	return nil
}
