package comfysim

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// proc is one incarnation of an instance, from Start (or Restart) to Stop:
// what a ComfyUI process holds in memory. Everything here dies with it.
type proc struct {
	sim    *Sim
	name   string          // the instance's label in the execution log
	ctx    context.Context // cancelled by shutdown
	cancel context.CancelFunc
	ln     net.Listener
	srv    *http.Server
	wg     sync.WaitGroup // worker, socket writers, serve loop

	// reqMu guards stopping; reqWG counts in-flight handlers.
	reqMu    sync.Mutex
	stopping bool
	reqWG    sync.WaitGroup

	// mu guards the queue state. Lock order: mu, then hmu, then the knobs' lock.
	mu      sync.Mutex
	queue   []*queueItem // a Python heapq list
	running *queueItem
	hist    *history
	counter int64 // PromptServer.number
	flags   struct{ unloadModels, freeMemory bool }
	wake    chan struct{} // nudges the worker; capacity 1

	// hmu guards the sockets and what a (re)connecting socket is told.
	hmu      sync.Mutex
	sockets  map[string]*wsConn
	hubCh    chan struct{} // closed and replaced when sockets change
	live     int           // WebSocket handlers running, registered or not
	clientID *string       // server.client_id of the current prompt
	lastNode *string       // server.last_node_id

	intr   atomic.Bool   // nodes.interrupt_processing flag
	intrCh chan struct{} // signalled with intr, for runs parked in a hang
	ex     *executor
}

func startProc(s *Sim, ln net.Listener, saved *savedState) *proc {
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{
		sim: s, name: s.name, ctx: ctx, cancel: cancel, ln: ln,
		hist:    newHistory(s.opts.HistoryMax),
		wake:    make(chan struct{}, 1),
		sockets: map[string]*wsConn{},
		hubCh:   make(chan struct{}),
		intrCh:  make(chan struct{}, 1),
	}
	if saved != nil {
		p.queue, p.hist, p.counter = saved.queue, saved.hist, saved.counter
	}
	p.ex = newExecutor(p)
	p.srv = &http.Server{Handler: p.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLogger}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.srv.Serve(ln)
	}()
	go func() {
		defer p.wg.Done()
		p.worker()
	}()
	return p
}

// shutdown kills the incarnation and waits for every goroutine it started.
// It returns the queue state KeepStateOnRestart would carry over.
func (p *proc) shutdown() *savedState {
	p.reqMu.Lock()
	p.stopping = true
	p.reqMu.Unlock()
	p.cancel()
	p.srv.Close()
	p.dropSockets(false)
	p.reqWG.Wait()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return &savedState{queue: p.queue, hist: p.hist, counter: p.counter}
}

// track counts a request as in flight, unless the instance is going away.
func (p *proc) track() bool {
	p.reqMu.Lock()
	defer p.reqMu.Unlock()
	if p.stopping {
		return false
	}
	p.reqWG.Add(1)
	return true
}

func (p *proc) sleep(d time.Duration) error { return sleepCtx(p.ctx, d) }

// remaining is queue_remaining: pending plus running. Caller holds mu.
func (p *proc) remaining() int {
	n := len(p.queue)
	if p.running != nil {
		n++
	}
	return n
}

func (p *proc) queueInfo() *obj {
	return newObj("exec_info", newObj("queue_remaining", p.remaining()))
}

// queueUpdated is PromptServer.queue_updated: a status broadcast. Caller holds mu.
func (p *proc) queueUpdated() {
	p.sendSync("status", newObj("status", p.queueInfo()), nil)
}

// put is PromptQueue.put.
func (p *proc) put(it *queueItem) {
	p.mu.Lock()
	p.queue = heapPush(p.queue, it)
	p.queueUpdated()
	p.mu.Unlock()
	p.nudge()
}

func (p *proc) nudge() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// worker is main.py's prompt_worker: one prompt at a time, in heap order.
func (p *proc) worker() {
	for {
		it := p.next()
		if it == nil {
			return
		}
		p.runItem(it)
		p.applyFlags()
	}
}

// next pops the next item (PromptQueue.get) or returns nil when the
// incarnation ends. Flags set while idle are applied here.
func (p *proc) next() *queueItem {
	for {
		p.mu.Lock()
		if p.ctx.Err() != nil {
			p.mu.Unlock()
			return nil
		}
		if len(p.queue) > 0 {
			var it *queueItem
			p.queue, it = heapPop(p.queue)
			p.running = it
			p.queueUpdated()
			p.mu.Unlock()
			return it
		}
		p.mu.Unlock()
		p.applyFlags()
		select {
		case <-p.wake:
		case <-p.ctx.Done():
			return nil
		}
	}
}

func (p *proc) runItem(it *queueItem) {
	log := p.sim.log
	started := time.Now()
	log.start(it.id, p.name, started)
	res, err := p.ex.execute(it)
	if err != nil { // the instance went away mid-run
		log.end(it.id, p.name, started, time.Now(), OutcomeAborted)
		return
	}
	p.taskDone(it, res)
	log.end(it.id, p.name, started, time.Now(), res.outcome)
	if client := clientOf(it.extra); client != nil {
		p.sendSync("executing", newObj("node", nil, "prompt_id", it.id), client)
	}
}

// taskDone is PromptQueue.task_done: history written, then a status broadcast.
func (p *proc) taskDone(it *queueItem, res runResult) {
	status := "error"
	if res.success {
		status = "success"
	}
	entry := newObj(
		"prompt", it.encoded,
		"outputs", res.outputs,
		"status", newObj("status_str", status, "completed", res.success, "messages", res.messages),
		"meta", res.meta,
	)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = nil
	p.hist.put(&historyEntry{id: it.id, encoded: rawJSON(encodePy(entry))})
	p.queueUpdated()
}

// beginRun resets the interrupt flag and records the executing client.
func (p *proc) beginRun(client *string) {
	p.intr.Store(false)
	select {
	case <-p.intrCh:
	default:
	}
	p.hmu.Lock()
	p.clientID = client
	p.lastNode = nil
	p.hmu.Unlock()
}

func (p *proc) endRun() {
	p.hmu.Lock()
	p.lastNode = nil
	p.hmu.Unlock()
}

func (p *proc) setLastNode(id string) {
	p.hmu.Lock()
	p.lastNode = &id
	p.hmu.Unlock()
}

// interrupt is nodes.interrupt_processing(), unless the instance ignores
// interrupts (Sim.IgnoreInterrupts).
func (p *proc) interrupt() {
	if p.sim.k.ignoresInterrupts() {
		return
	}
	p.intr.Store(true)
	select {
	case p.intrCh <- struct{}{}:
	default:
	}
}

func (p *proc) interrupted() bool { return p.intr.Load() }

// runningID returns the id of the running prompt, or "".
func (p *proc) runningID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running == nil {
		return ""
	}
	return p.running.id
}

// setFlags is PromptQueue.set_flag for /free.
func (p *proc) setFlags(unload, free bool) {
	p.mu.Lock()
	p.flags.unloadModels = p.flags.unloadModels || unload
	p.flags.freeMemory = p.flags.freeMemory || free
	p.mu.Unlock()
	p.nudge()
}

// applyFlags unloads the model and drops the caches as /free asked.
func (p *proc) applyFlags() {
	p.mu.Lock()
	f := p.flags
	p.flags.unloadModels, p.flags.freeMemory = false, false
	p.mu.Unlock()
	if f.unloadModels || f.freeMemory {
		p.sim.k.forgetModel()
	}
	if f.freeMemory {
		p.ex.reset()
	}
}
