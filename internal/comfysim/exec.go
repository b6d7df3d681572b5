package comfysim

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"
)

// The executor is a port of PromptExecutor.execute_async and execute()
// (ComfyUI v0.3.65 execution.py) with the classic cache: node outputs and UI
// are cached by input signature, and only the signatures of the current
// prompt survive into the next one.

var (
	// errInterrupted is InterruptProcessingException.
	errInterrupted = errors.New("comfysim: interrupted")
	// errAborted means the instance went away mid-run (Stop or Close).
	errAborted = errors.New("comfysim: instance stopped")
)

type cacheEntry struct {
	outputs []any
	ui      *obj // {"meta":…, "output":…} or nil
}

// nodeObject is per-(node id, class) state that ComfyUI keeps on the node
// instance, such as PreviewImage's random filename suffix.
type nodeObject struct {
	tempSuffix string
}

type objectKey struct{ id, class string }

type executor struct {
	p       *proc
	cache   map[string]*cacheEntry // signature -> outputs and UI
	objects map[objectKey]*nodeObject
	rng     *rand.Rand
}

func newExecutor(p *proc) *executor {
	return &executor{p: p, cache: map[string]*cacheEntry{}, objects: map[objectKey]*nodeObject{}, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// reset drops every cache, as POST /free {"free_memory": true} does.
func (e *executor) reset() {
	clear(e.cache)
	clear(e.objects)
}

// runResult is what task_done needs from a run.
type runResult struct {
	success  bool
	outcome  string // OutcomeSuccess, OutcomeError, OutcomeInterrupted
	messages []any
	outputs  *obj
	meta     *obj
}

// run is one execution of one prompt.
type run struct {
	e        *executor
	item     *queueItem
	g        *graph
	client   *string // extra_data.client_id, nil when absent or null
	sigs     map[string]string
	messages []any
	executed []string
	progress *progressRegistry
	hang     bool
}

// execute runs item to completion; errAborted means the instance stopped.
func (e *executor) execute(item *queueItem) (runResult, error) {
	r := &run{e: e, item: item, g: item.graph, client: clientOf(item.extra), progress: newProgressRegistry()}
	e.p.beginRun(r.client)
	r.hang = e.p.sim.takeHang(item.id)
	r.addMessage("execution_start", newObj("prompt_id", item.id), false)
	r.sigs = r.g.signatures(e.isChanged)
	e.cleanUnused(r)
	r.addMessage("execution_cached", newObj("nodes", r.cachedNodes(), "prompt_id", item.id), false)

	list := newExecList(r.g, r.cached)
	for _, o := range item.outputs {
		list.addNode(o)
	}
	res := runResult{outcome: OutcomeSuccess, success: true}
	if err := r.loop(list); err != nil {
		if errors.Is(err, errAborted) {
			return runResult{}, err
		}
		res = runResult{outcome: outcomeOf(err)}
	} else {
		// A hang with no node left to run: an interrupt has no boundary to
		// land on and is lost, as in ComfyUI; only a stop ends the run.
		if err := r.hangHere(""); errors.Is(err, errAborted) {
			return runResult{}, err
		}
		r.addMessage("execution_success", newObj("prompt_id", item.id), false)
	}
	res.messages = r.messages
	res.outputs, res.meta = r.uiOutputs()
	e.p.endRun()
	return res, nil
}

func outcomeOf(err error) string {
	if errors.Is(err, errInterrupted) {
		return OutcomeInterrupted
	}
	return OutcomeError
}

func clientOf(extra *obj) *string {
	v, ok := extra.get("client_id")
	if !ok || v == nil {
		return nil
	}
	s, isStr := v.(string)
	if !isStr {
		s = "\x00" + pyRepr(v) // a non-string id matches no socket
	}
	return &s
}

// cleanUnused keeps only cache entries and node objects the prompt uses.
func (e *executor) cleanUnused(r *run) {
	used := make(map[string]bool, len(r.sigs))
	for _, s := range r.sigs {
		used[s] = true
	}
	for s := range e.cache {
		if !used[s] {
			delete(e.cache, s)
		}
	}
	for k := range e.objects {
		if n := r.g.nodes[k.id]; n == nil || n.class != k.class {
			delete(e.objects, k)
		}
	}
}

// isChanged is the IS_CHANGED value of the classes that define one.
func (e *executor) isChanged(n *gnode) string {
	switch n.class {
	case "SaveImageWebsocket":
		return strconv.FormatUint(e.rng.Uint64(), 16) // time.time(): always changed
	case "LoadImage", "LoadImageMask":
		name, _ := n.inputs.at("image").(string)
		dir, rel := annotatedPath(name, dirInput)
		if f, ok := e.p.sim.files.get(dir, rel); ok {
			sum := f.sha256()
			return hex.EncodeToString(sum[:])
		}
		return "nan:" + strconv.FormatUint(e.rng.Uint64(), 16)
	}
	return ""
}

func (r *run) cached(id string) bool {
	_, ok := r.e.cache[r.sigs[id]]
	return ok
}

func (r *run) cachedNodes() []any {
	nodes := []any{}
	for _, id := range r.g.order {
		if r.cached(id) {
			nodes = append(nodes, id)
		}
	}
	return nodes
}

// addMessage is PromptExecutor.add_message: stamped, kept for history, and
// sent to the client (or to everyone when broadcast and there is no client).
func (r *run) addMessage(event string, data *obj, broadcast bool) {
	data.set("timestamp", time.Now().UnixMilli())
	r.messages = append(r.messages, []any{event, data})
	if r.client != nil || broadcast {
		r.e.p.sendSync(event, data, r.client)
	}
}

// toClient sends what ComfyUI guards with `if client_id is not None`.
func (r *run) toClient(event string, data *obj) {
	if r.client != nil {
		r.e.p.sendSync(event, data, r.client)
	}
}

func (r *run) loop(list *execList) error {
	for !list.empty() {
		id, ok := list.next()
		if !ok {
			return r.fail(list.cycleNode(), &pyExc{typ: cycleErrType, msg: "Dependency cycle detected", tb: []string{}}, nil)
		}
		if err := r.executeNode(id); err != nil {
			return err
		}
		list.done(id)
	}
	return nil
}

// executeNode is execute() for one node.
func (r *run) executeNode(id string) error {
	n := r.g.nodes[id]
	if entry, ok := r.e.cache[r.sigs[id]]; ok {
		r.toClient("executed", newObj("node", id, "display_node", id, "output", uiOutput(entry.ui), "prompt_id", r.item.id))
		r.progress.finish(id)
		r.sendProgressState()
		return nil
	}
	r.progress.start(id)
	r.sendProgressState()
	if r.client != nil {
		r.e.p.setLastNode(id)
		r.e.p.sendSync("executing", newObj("node", id, "display_node", id, "prompt_id", r.item.id), r.client)
	}
	x := r.newNodeRun(n)
	outs, ui, err := r.callNode(x)
	if err != nil {
		return r.fail(id, err, x)
	}
	entry := &cacheEntry{outputs: outs}
	if ui != nil && ui.len() > 0 {
		entry.ui = newObj("meta", newObj("node_id", id, "display_node", id, "parent_node", nil, "real_node_id", id), "output", ui)
		r.toClient("executed", newObj("node", id, "display_node", id, "output", ui, "prompt_id", r.item.id))
	}
	r.e.cache[r.sigs[id]] = entry
	r.progress.finish(id)
	r.sendProgressState()
	r.executed = append(r.executed, id)
	return nil
}

func uiOutput(ui *obj) any {
	if ui == nil {
		return nil
	}
	return ui.at("output")
}

// callNode runs the node function after ComfyUI's before_node_execution
// interrupt check, with the instance's delays and injected faults.
func (r *run) callNode(x *nodeRun) ([]any, *obj, error) {
	if err := r.hangHere(x.id); err != nil {
		return nil, nil, err
	}
	if r.e.p.interrupted() {
		return nil, nil, errInterrupted
	}
	r.e.p.sim.k.nodeStarted(r.item.id, x.id)
	if err := x.sleep(r.e.p.sim.nodeDelay(x.spec.class)); err != nil {
		return nil, nil, err
	}
	if msg, ok := r.e.p.sim.nodeFault(x.id, x.spec.class); ok {
		return nil, nil, &pyExc{typ: "RuntimeError", msg: msg}
	}
	fn := nodeFuncs[x.spec.class]
	if fn == nil {
		fn = runGeneric
	}
	return fn(x)
}

// hangHere parks the run while it is set to hang: in the first node that
// executes, or before execution_success when every node was cached.
func (r *run) hangHere(id string) error {
	if !r.hang {
		return nil
	}
	r.hang = false
	return r.e.p.sim.hangUntilReleased(r.e.p, r.item.id, id)
}

// fail reports err on node id (handle_execution_error) and returns the
// error that ends the run.
func (r *run) fail(id string, err error, x *nodeRun) error {
	if errors.Is(err, errAborted) {
		return err
	}
	class := r.g.nodes[id].class
	executed := stringsToAny(r.executed)
	if errors.Is(err, errInterrupted) {
		r.addMessage("execution_interrupted", newObj("prompt_id", r.item.id, "node_id", id, "node_type", class, "executed", executed), true)
		return err
	}
	var exc *pyExc
	if !errors.As(err, &exc) {
		exc = &pyExc{typ: "Exception", msg: err.Error()}
	}
	var inputs any = newObj()
	msg := exc.msg + "\n" // "{}\n{}".format(ex, tips), tips empty
	if x != nil {
		inputs = x.formattedInputs()
	} else if exc.typ == cycleErrType {
		inputs, msg = []any{}, exc.msg // staging errors are reported as built
	}
	tb := exc.tb
	if tb == nil {
		tb = nodeTraceback(class)
	}
	r.addMessage("execution_error", newObj("prompt_id", r.item.id, "node_id", id, "node_type", class, "executed", executed,
		"exception_message", msg, "exception_type", exc.typ, "traceback", stringsToAny(tb),
		"current_inputs", inputs, "current_outputs", stringsToAny(r.g.order)), false)
	return err
}

const cycleErrType = "graph.DependencyCycleError"

func nodeTraceback(class string) []string {
	return []string{
		tbFrame(498, "execute", "output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)", "                                                              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
		tbFrame(316, "get_output_data", "return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)", "                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
		tbFrame(290, "_async_map_node_over_list", "await process_inputs(input_dict, i)", ""),
		tbFrame(278, "process_inputs", "result = f(**inputs)", "             ^^^^^^^^^^^"),
		"  File \"/srv/ComfyUI/nodes.py\", line 1, in " + class + "\n    (simulated by comfysim)\n",
	}
}

// uiOutputs is the history's outputs and meta: the UI of every node of the
// prompt found in the UI cache, fresh or cached, in prompt order.
func (r *run) uiOutputs() (*obj, *obj) {
	outputs, meta := newObj(), newObj()
	for _, id := range r.g.order {
		entry, ok := r.e.cache[r.sigs[id]]
		if !ok || entry.ui == nil {
			continue
		}
		outputs.set(id, entry.ui.at("output"))
		meta.set(id, entry.ui.at("meta"))
	}
	return outputs, meta
}

func (r *run) sendProgressState() {
	r.e.p.sendSync("progress_state", newObj("prompt_id", r.item.id, "nodes", r.progress.state(r.item.id)), r.client)
}

// progressRegistry is comfy_execution/progress.py's ProgressRegistry: entries
// in the order nodes were first touched, values kept as Python set them
// (floats from start_progress, ints from ensure_entry and ProgressBar).
type progressRegistry struct {
	order []string
	nodes map[string]*nodeProgress
}

type nodeProgress struct {
	value, max any
	state      string
}

func newProgressRegistry() *progressRegistry {
	return &progressRegistry{nodes: map[string]*nodeProgress{}}
}

func (p *progressRegistry) entry(id string) *nodeProgress {
	e, ok := p.nodes[id]
	if !ok {
		e = &nodeProgress{value: int64(0), max: int64(1), state: "pending"}
		p.nodes[id] = e
		p.order = append(p.order, id)
	}
	return e
}

func (p *progressRegistry) start(id string) {
	e := p.entry(id)
	e.state, e.value, e.max = "running", 0.0, 1.0
}

func (p *progressRegistry) update(id string, value, max int) {
	e := p.entry(id)
	e.state, e.value, e.max = "running", int64(value), int64(max)
}

func (p *progressRegistry) finish(id string) {
	e := p.entry(id)
	e.state, e.value = "finished", e.max
}

// state is the "nodes" member of a progress_state message.
func (p *progressRegistry) state(promptID string) *obj {
	out := newObj()
	for _, id := range p.order {
		e := p.nodes[id]
		if e.state == "pending" {
			continue
		}
		out.set(id, newObj("value", e.value, "max", e.max, "state", e.state, "node_id", id, "prompt_id", promptID,
			"display_node_id", id, "parent_node_id", nil, "real_node_id", id))
	}
	return out
}
