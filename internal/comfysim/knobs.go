package comfysim

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// knobs holds an instance's test controls and records; they survive
// Stop/Restart. Its lock is a leaf: nothing else is locked while it is held.
type knobs struct {
	mu           sync.Mutex
	nodeDelay    time.Duration
	classDelay   map[string]time.Duration
	faults       []*nodeFault
	httpFaults   []*HTTPFault
	wsDrops      []*wsDrop
	hangNext     int
	hangIDs      map[string]bool
	hanging      map[string]*hangEntry
	changed      chan struct{}   // closed and replaced whenever hanging or started changes
	started      map[string]bool // "prompt/node" of the last maxStarted nodes whose work began
	startedOrder []string
	prompts      []ReceivedPrompt
	interrupts   []Interrupt
	modelLoads   int
	loadedModel  string
	deaf         bool // interrupts are recorded but do nothing
}

type nodeFault struct {
	target, message string
	times           int // < 0: every time
}

type wsDrop struct {
	event string
	n     int
}

type hangEntry struct {
	release chan struct{}
	node    string
}

func (k *knobs) init(nodeDelay time.Duration) {
	k.nodeDelay = nodeDelay
	k.classDelay = map[string]time.Duration{}
	k.hangIDs = map[string]bool{}
	k.hanging = map[string]*hangEntry{}
	k.started = map[string]bool{}
	k.changed = make(chan struct{})
}

// ReceivedPrompt is one POST /prompt an instance received.
type ReceivedPrompt struct {
	Time     time.Time
	PromptID string // the id assigned; "" when the request failed before one was chosen
	ClientID string // the client_id member when it is a string
	Status   int    // the HTTP status answered
	// Body is the request body as received.
	Body json.RawMessage
	// Prompt is the "prompt" member exactly as submitted; nil when absent.
	Prompt json.RawMessage
}

// Interrupt is one POST /interrupt an instance received.
type Interrupt struct {
	Time     time.Time
	PromptID string // the targeted prompt_id; "" for a global interrupt
	Running  string // the prompt running when it arrived; "" when idle
	Applied  bool   // whether the interrupt flag was raised
}

// HTTPFault makes matching requests fail.
type HTTPFault struct {
	// Route selects requests: "" for all, "/prompt", "POST /prompt", or a
	// prefix ending in "/" such as "/history/". The /api alias matches too.
	Route string
	// Times is how many matching requests fail; <= 0 means 1.
	Times int
	// Status is the failure status. Default 500 with aiohttp's plain-text body.
	Status int
	// After handles the request first and then fails the response, so the
	// server acted but the client cannot tell (a prompt is queued, say).
	After bool
	// Drop closes the connection without any response instead of answering.
	Drop bool
	// Stall answers 200 and the first bytes of a body, then sends nothing
	// more until the client gives up: a download that stalls.
	Stall bool
	// Hold handles the request and keeps its answer until Hold is closed
	// or the client gives up: a server slow to answer (the real one, busy
	// running a prompt, answers POST /prompt late but has queued it).
	// Status is not used.
	Hold <-chan struct{}
}

func (f *HTTPFault) matches(method, path string) bool {
	route := f.Route
	if m, rest, ok := strings.Cut(route, " "); ok {
		if m != method {
			return false
		}
		route = rest
	}
	if strings.HasPrefix(path, "/api/") {
		path = path[len("/api"):]
	}
	switch {
	case route == "":
		return true
	case strings.HasSuffix(route, "/"):
		return strings.HasPrefix(path, route)
	}
	return path == route
}

// SetNodeDelay sets how long nodes of classType take; classType "" sets the
// default for every class without its own delay.
func (s *Sim) SetNodeDelay(classType string, d time.Duration) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if classType == "" {
		s.k.nodeDelay = d
		return
	}
	s.k.classDelay[classType] = d
}

func (s *Sim) nodeDelay(class string) time.Duration {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if d, ok := s.k.classDelay[class]; ok {
		return d
	}
	return s.k.nodeDelay
}

// FailNode makes every execution of a node fail with an execution_error
// carrying message (exception_type RuntimeError). target is a node id or a
// class_type.
func (s *Sim) FailNode(target, message string) { s.addFault(target, message, -1) }

// FailNodeOnce is FailNode for the next matching execution only.
func (s *Sim) FailNodeOnce(target, message string) { s.addFault(target, message, 1) }

func (s *Sim) addFault(target, message string, times int) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.faults = append(s.k.faults, &nodeFault{target: target, message: message, times: times})
}

func (s *Sim) nodeFault(id, class string) (string, bool) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	for i, f := range s.k.faults {
		if f.target != id && f.target != class {
			continue
		}
		if f.times > 0 {
			if f.times--; f.times == 0 {
				s.k.faults = append(s.k.faults[:i:i], s.k.faults[i+1:]...)
			}
		}
		return f.message, true
	}
	return "", false
}

// FailHTTP answers the next n requests matching route with aiohttp's 500
// before handling them.
func (s *Sim) FailHTTP(route string, n int) { s.InjectHTTPFault(HTTPFault{Route: route, Times: n}) }

// InjectHTTPFault adds a request fault.
func (s *Sim) InjectHTTPFault(f HTTPFault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	if f.Status == 0 {
		f.Status = http500
	}
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.httpFaults = append(s.k.httpFaults, &f)
}

// httpFault consumes the first fault matching the request.
func (s *Sim) httpFault(method, path string) (HTTPFault, bool) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	for i, f := range s.k.httpFaults {
		if !f.matches(method, path) {
			continue
		}
		if f.Times--; f.Times == 0 {
			s.k.httpFaults = append(s.k.httpFaults[:i:i], s.k.httpFaults[i+1:]...)
		}
		return *f, true
	}
	return HTTPFault{}, false
}

// DropWebSockets cuts every WebSocket of the instance now, without a close
// frame; frames already queued are delivered first.
func (s *Sim) DropWebSockets() {
	if p := s.current(); p != nil {
		p.dropSockets(true)
	}
}

// DropWebSocketOn cuts every WebSocket when the instance is about to send
// the n-th (1-based) next frame of type event, e.g. ("executing", 2); that
// frame is lost with the sockets.
func (s *Sim) DropWebSocketOn(event string, n int) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.wsDrops = append(s.k.wsDrops, &wsDrop{event: event, n: max(n, 1)})
}

func (k *knobs) consumeWSDrop(event string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, d := range k.wsDrops {
		if d.event != event {
			continue
		}
		if d.n--; d.n == 0 {
			k.wsDrops = append(k.wsDrops[:i:i], k.wsDrops[i+1:]...)
			return true
		}
	}
	return false
}

// ClearFaults removes node faults, HTTP faults, pending WebSocket drops and
// hangs that have not started yet. Node delays stay.
func (s *Sim) ClearFaults() {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.faults, s.k.httpFaults, s.k.wsDrops = nil, nil, nil
	s.k.hangNext = 0
	clear(s.k.hangIDs)
}

// Hang makes a prompt never finish until Release, an interrupt, or Stop:
// it parks inside its first executing node, interruptible like a sampler.
// promptID "" means the next prompt to start.
func (s *Sim) Hang(promptID string) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if promptID == "" {
		s.k.hangNext++
		return
	}
	s.k.hangIDs[promptID] = true
}

// IgnoreInterrupts makes the instance record interrupts but not act on
// them, like a process stuck in a native call that never returns to
// Python: a hanging prompt then stays running until Release or Stop.
func (s *Sim) IgnoreInterrupts(on bool) {
	s.k.mu.Lock()
	s.k.deaf = on
	s.k.mu.Unlock()
}

func (k *knobs) ignoresInterrupts() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.deaf
}

// Release lets every hanging prompt continue and cancels pending Hangs.
func (s *Sim) Release() { s.k.releaseAll() }

func (k *knobs) releaseAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hangNext = 0
	clear(k.hangIDs)
	for id, h := range k.hanging {
		close(h.release)
		delete(k.hanging, id)
	}
	k.notify()
}

// Hanging returns the ids of the prompts parked in a hang.
func (s *Sim) Hanging() []string {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	ids := make([]string, 0, len(s.k.hanging))
	for id := range s.k.hanging {
		ids = append(ids, id)
	}
	return ids
}

// WaitHanging blocks until some prompt is parked in a hang and returns its id.
func (s *Sim) WaitHanging(ctx context.Context) (string, error) {
	for {
		s.k.mu.Lock()
		for id := range s.k.hanging {
			s.k.mu.Unlock()
			return id, nil
		}
		ch := s.k.changed
		s.k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

const maxStarted = 4096

// nodeStarted records that a node passed its interrupt check and began.
func (k *knobs) nodeStarted(promptID, nodeID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := promptID + "/" + nodeID
	if !k.started[key] {
		k.started[key] = true
		k.startedOrder = append(k.startedOrder, key)
	}
	if len(k.startedOrder) > maxStarted { // forget the oldest
		delete(k.started, k.startedOrder[0])
		k.startedOrder = k.startedOrder[1:]
	}
	k.notify()
}

// WaitNodeStarted blocks until node nodeID of promptID has passed its
// interrupt check and begun its work (its delay, steps or hang). An
// interrupt sent after that lands at the next node boundary or step.
func (s *Sim) WaitNodeStarted(ctx context.Context, promptID, nodeID string) error {
	for {
		s.k.mu.Lock()
		done, ch := s.k.started[promptID+"/"+nodeID], s.k.changed
		s.k.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (k *knobs) notify() {
	close(k.changed)
	k.changed = make(chan struct{})
}

func (s *Sim) takeHang(id string) bool {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if s.k.hangIDs[id] {
		delete(s.k.hangIDs, id)
		return true
	}
	if s.k.hangNext > 0 {
		s.k.hangNext--
		return true
	}
	return false
}

// hangUntilReleased parks the run of id until Release (nil), an interrupt
// (errInterrupted) or the instance stopping (errAborted).
func (s *Sim) hangUntilReleased(p *proc, id, node string) error {
	h := &hangEntry{release: make(chan struct{}), node: node}
	s.k.mu.Lock()
	s.k.hanging[id] = h
	s.k.notify()
	s.k.mu.Unlock()
	var err error
	select {
	case <-h.release:
		return nil
	case <-p.intrCh:
		err = errInterrupted
	case <-p.ctx.Done():
		err = errAborted
	}
	s.k.mu.Lock()
	if s.k.hanging[id] == h {
		delete(s.k.hanging, id)
		s.k.notify()
	}
	s.k.mu.Unlock()
	return err
}

// ModelLoads counts checkpoint loads (each paid ModelLoadDelay).
func (s *Sim) ModelLoads() int {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	return s.k.modelLoads
}

// LoadedModel is the checkpoint loaded last; "" after a restart or /free.
func (s *Sim) LoadedModel() string {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	return s.k.loadedModel
}

func (s *Sim) loadModel(p *proc, name string) error {
	s.k.mu.Lock()
	same := s.k.loadedModel == name
	s.k.mu.Unlock()
	if same {
		return nil
	}
	if err := p.sleep(s.opts.ModelLoadDelay); err != nil {
		return err
	}
	s.k.mu.Lock()
	s.k.loadedModel = name
	s.k.modelLoads++
	s.k.mu.Unlock()
	return nil
}

func (k *knobs) forgetModel() {
	k.mu.Lock()
	k.loadedModel = ""
	k.mu.Unlock()
}

// Prompts returns the POST /prompt requests received, oldest first.
func (s *Sim) Prompts() []ReceivedPrompt {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	return append([]ReceivedPrompt(nil), s.k.prompts...)
}

// Interrupts returns the POST /interrupt requests received, oldest first.
func (s *Sim) Interrupts() []Interrupt {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	return append([]Interrupt(nil), s.k.interrupts...)
}

func (s *Sim) recordPrompt(r ReceivedPrompt) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.prompts = appendBounded(s.k.prompts, r, s.opts.MaxRecorded)
}

func (s *Sim) recordInterrupt(i Interrupt) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.interrupts = appendBounded(s.k.interrupts, i, s.opts.MaxRecorded)
}

// appendBounded appends v, first dropping the older half when list is full,
// so recording stays O(1) amortised and at most max entries are kept.
func appendBounded[T any](list []T, v T, max int) []T {
	if len(list) >= max {
		list = append(list[:0:0], list[len(list)-max/2:]...)
	}
	return append(list, v)
}

// SetModels changes the checkpoints and LoRAs the instance offers from now
// on, as when files are added to or removed from its model folders; nil
// keeps a list. Like ComfyUI, the instance's /object_info and its
// validation follow at once; a gateway sees it when it reads /object_info
// again.
func (s *Sim) SetModels(checkpoints, loras []string) { s.cat.setModels(checkpoints, loras) }
