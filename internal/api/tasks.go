package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/eta"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/logging"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
	"github.com/comfyfleet/comfyfleet/internal/workflow"
)

// taskView is a task as the API shows it.
type taskView struct {
	ID            string          `json:"id"`
	Owner         string          `json:"owner"`
	Status        task.Status     `json:"status"`
	Progress      int             `json:"progress"`
	Priority      int             `json:"priority"`
	InstanceID    string          `json:"instanceId"`
	Attempts      int             `json:"attempts"`
	CreatedAt     string          `json:"createdAt"`
	UpdatedAt     string          `json:"updatedAt"`
	StartedAt     *string         `json:"startedAt"`
	FinishedAt    *string         `json:"finishedAt"`
	Workflow      json.RawMessage `json:"workflow,omitempty"`
	Params        json.RawMessage `json:"params,omitempty"`
	Result        *task.Result    `json:"result"`
	Error         *task.Error     `json:"error"`
	QueuePosition *int            `json:"queuePosition,omitempty"`
	// EstimatedStart and EstimatedFinish: when a pending task is expected
	// to start and finish (eta); absent when the gateway cannot tell.
	EstimatedStart  *string `json:"estimatedStart,omitempty"`
	EstimatedFinish *string `json:"estimatedFinish,omitempty"`
	// CancelRequested: the running task was asked to stop (DELETE); it ends
	// cancelled once its instance confirms the interrupt.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Requires are the labels the task's instance must have.
	Requires map[string]string `json:"requires,omitempty"`
	// Pinned keeps the task, and its output files, from retention.
	Pinned bool `json:"pinned"`
	// Webhook is the task's own webhook, in the answer that created it
	// only (with its secret).
	Webhook *webhookView `json:"webhook,omitempty"`
}

// makeTaskView shows t, its result's file URLs rendered for this gateway
// (server.publicBaseUrl) from the file ids: the replica that collected
// them may be gone.
func (s *Server) makeTaskView(t *task.Task) taskView {
	return taskView{
		ID: t.ID, Owner: t.Owner, Status: t.Status, Progress: t.Progress, Priority: t.Priority,
		InstanceID: t.InstanceID, Attempts: t.Attempts,
		CreatedAt: formatTime(t.CreatedAt), UpdatedAt: formatTime(t.UpdatedAt),
		StartedAt: timePtr(t.StartedAt), FinishedAt: timePtr(t.FinishedAt),
		Workflow: t.Workflow, Params: t.Params, Error: t.Error,
		Result:          s.renderResult(t.Result),
		CancelRequested: t.CancelRequested && t.Status == task.StatusRunning, Requires: t.Requires,
		Pinned: t.Pinned,
	}
}

// renderResult is r with its file URLs made for this gateway
// (server.publicBaseUrl) from the file ids.
func (s *Server) renderResult(r *task.Result) *task.Result {
	base := s.deps.Config.Current().Server.PublicBaseURL
	return r.WithURLs(func(id, name string) string { return file.URL(base, id, name) })
}

// EventData is the data this gateway's /ws clients get for ev
// (push.Options.EventData): a task_completed's file URLs rendered for this
// gateway, as a task read over REST shows them; the event carries those of
// the replica that collected the files, which may be gone. Other events,
// and data that does not decode, keep their data.
func (s *Server) EventData(ev event.Event) json.RawMessage {
	if ev.Type != event.TypeTaskCompleted {
		return ev.Data
	}
	var d event.TaskCompletedData
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.Result == nil {
		return ev.Data
	}
	d.Result = s.renderResult(d.Result)
	b, err := json.Marshal(d)
	if err != nil {
		return ev.Data
	}
	return b
}

type createTaskRequest struct {
	Workflow json.RawMessage            `json:"workflow"`
	Params   map[string]json.RawMessage `json:"params"`
	Priority int                        `json:"priority"`
	// Timeout overrides the configured run timeout, in milliseconds.
	Timeout int64 `json:"timeout"`
	// Requires are labels the task's instance must have (capabilities.go).
	Requires map[string]string `json:"requires"`
	// Webhook, when set, receives the task's events (webhooks.go).
	Webhook *webhookRequest `json:"webhook"`
}

// createTask is POST /api/tasks.
func (s *Server) createTask(w http.ResponseWriter, r *http.Request) error {
	lim := s.deps.Config.Current().Limits
	limit, key := s.taskBodyLimit(lim)
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		return err
	}
	var req createTaskRequest
	if err := decodeJSONLimit(w, r, &req, limit); err != nil {
		return bodyLimitError(err, key)
	}
	ctx, c := r.Context(), claims(r)
	// A user at the storage quota submits nothing: the outputs would pass it.
	if _, _, err := s.storedRoom(ctx, c.Username, c.IsAdmin(), lim); err != nil {
		return err
	}
	checkpoints, cap, err := s.checkSubmission(ctx, &req, c.Username, c.IsAdmin(), lim)
	if err != nil {
		return err
	}
	var hook *store.WebhookSub
	if req.Webhook != nil {
		if hook, err = s.checkWebhook(ctx, req.Webhook, "webhook", c.Username); err != nil {
			return err
		}
	}
	var params json.RawMessage
	if len(req.Params) > 0 {
		params, _ = json.Marshal(req.Params)
	}
	p := &store.TaskInsertParams{
		ID: uuid.NewString(), Owner: c.Username, Priority: req.Priority,
		Workflow: compactJSON(req.Workflow), Params: params, Checkpoints: checkpoints, Requires: req.Requires,
		Cap: cap, Timeout: time.Duration(req.Timeout) * time.Millisecond,
		Aging: time.Duration(s.deps.Config.Current().Scheduler.PriorityAging), Now: s.now(),
	}
	if !c.IsAdmin() && lim.MaxPendingPerUser != config.NoQuota {
		p.MaxPending = lim.MaxPendingPerUser
	}
	// The store logs the new task's events in the insert's own step: a
	// replica killed right after it cannot lose them.
	if p.Events, err = event.Pending(&task.Task{ID: p.ID, Owner: p.Owner, Status: task.StatusPending}); err != nil {
		return err
	}
	// The task's webhook is stored first, so its first event finds it.
	if hook != nil {
		hook.ID, hook.TaskID = "wh_"+uuid.NewString(), p.ID
		if err := s.deps.Store.WebhookSubInsert(ctx, hook); err != nil {
			return err
		}
	}
	insert := s.deps.Store.TaskInsert
	if s.deps.InsertTask != nil {
		insert = s.deps.InsertTask
	}
	t, err := insert(ctx, p)
	if err != nil && hook != nil {
		if derr := s.deps.Store.WebhookSubDelete(context.WithoutCancel(ctx), hook.ID); derr != nil {
			s.log.WarnContext(ctx, "delete the webhook of a task not inserted failed", "webhook_id", hook.ID, "err", derr)
		}
	}
	if errors.Is(err, store.ErrLimit) {
		return pendingQuotaError(lim.MaxPendingPerUser)
	}
	if err != nil {
		return err
	}
	logging.NoteTask(ctx, t.ID)
	// The answer is the only place the webhook's secret is shown.
	var hv *webhookView
	if hook != nil {
		v := makeWebhookView(hook)
		v.Secret = hook.Secret
		hv = &v
	}
	if wait > 0 && s.deps.Hub != nil {
		return s.waitTask(w, r, t.ID, wait, hv)
	}
	// No queuePosition here: it costs a count over the queue, and GET has it.
	v := s.makeTaskView(t)
	v.Webhook = hv
	return writeJSON(w, v)
}

// maxTaskWait bounds POST /api/tasks?wait=: a longer run is followed over
// /ws or by polling GET /api/tasks/{id}.
const maxTaskWait = 5 * time.Minute

// parseWait reads the wait query parameter: a duration ("60s", "2m") or
// whole seconds ("60"); empty is no wait.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, fieldError("wait", "must be a duration like 60s, or whole seconds")
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > maxTaskWait {
		return 0, fieldError("wait", fmt.Sprintf("must be between 0s and %v", maxTaskWait))
	}
	return d, nil
}

// waitTask answers a submission with ?wait: the finished task (200) as soon
// as it ends within wait, else the task as it is then (202 Accepted, code
// 202). It waits on the hub's final events, never polling the store: it
// reads the task once, then again each time the hub says it may have ended.
func (s *Server) waitTask(w http.ResponseWriter, r *http.Request, id string, wait time.Duration, hook *webhookView) error {
	ctx := r.Context()
	// The answer may come after the server's write timeout.
	wt := time.Duration(s.deps.Config.Current().Server.WriteTimeout)
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(max(wt, wait+30*time.Second))); err != nil &&
		!errors.Is(err, http.ErrNotSupported) {
		s.log.WarnContext(ctx, "extend the write deadline of a waiting submit", "err", err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ended, stop := s.deps.Hub.AwaitFinal(id)
		t, err := s.deps.Store.TaskGet(ctx, id)
		if err != nil {
			stop()
			return err
		}
		if t.Status.Final() {
			stop()
			return writeJSON(w, s.waitView(t, hook))
		}
		select {
		case <-ended:
			stop()
		case <-timer.C:
			stop()
			if t, err = s.deps.Store.TaskGet(ctx, id); err != nil {
				return err
			}
			if t.Status.Final() {
				return writeJSON(w, s.waitView(t, hook))
			}
			return writeEnvelope(w, http.StatusAccepted, envelope{Code: http.StatusAccepted, Data: s.waitView(t, hook)})
		case <-ctx.Done():
			stop()
			return ctx.Err()
		}
	}
}

// waitView is the answer of a waiting submit: the task, with its webhook
// and the webhook's secret when the submit registered one.
func (s *Server) waitView(t *task.Task, hook *webhookView) taskView {
	v := s.makeTaskView(t)
	v.Webhook = hook
	return v
}

// checkSubmission validates the workflow and params within lim and against
// the fleet, and returns the checkpoints the run will load and its
// placement requirement. Its work is linear in the size of the request, and
// it stops when ctx ends (the client went away).
func (s *Server) checkSubmission(ctx context.Context, req *createTaskRequest, owner string, admin bool, lim config.Limits) ([]string, *store.CapParams, error) {
	if err := s.checkTimeout(req.Timeout); err != nil {
		return nil, nil, err
	}
	if req.Priority < store.MinPriority || req.Priority > store.MaxPriority {
		return nil, nil, fieldError("priority", fmt.Sprintf("must be between %d and %d", store.MinPriority, store.MaxPriority))
	}
	if err := checkRequires(req.Requires); err != nil {
		return nil, nil, err
	}
	bound := workflow.Limits{MaxNodes: lim.MaxNodes}
	p, err := workflow.ParseContext(ctx, req.Workflow, bound)
	if err != nil {
		return nil, nil, workflowError(err, lim)
	}
	params, err := p.ResolveParamsContext(ctx, req.Params)
	if err != nil {
		return nil, nil, workflowError(err, lim)
	}
	// An instance's folders are shared: a user's task loads only its own
	// files (docs/security.md). Admins are trusted with the instance.
	if !admin {
		if err := p.CheckFileReferences(ctx, params); err != nil {
			return nil, nil, workflowError(err, lim)
		}
	}
	if err := s.checkFiles(ctx, params, owner, admin, lim.MaxNodes); err != nil {
		return nil, nil, err
	}
	cap, err := s.checkFleet(ctx, p, params, req.Requires)
	if err != nil {
		return nil, nil, err
	}
	applied, err := p.Apply(params, nil)
	if err != nil {
		return nil, nil, err
	}
	final, err := workflow.ParseContext(ctx, applied, bound)
	if err != nil {
		return nil, nil, workflowError(err, lim)
	}
	return final.Checkpoints(), cap, nil
}

// checkFiles checks that every file the params name exists and is the
// caller's (or the caller is an admin). Each file is read once, and at most
// maxFiles distinct files may be named.
func (s *Server) checkFiles(ctx context.Context, params []workflow.Param, owner string, admin bool, maxFiles int) error {
	seen := map[string]bool{}
	for _, prm := range params {
		if prm.File == nil || seen[prm.File.FileID] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		seen[prm.File.FileID] = true
		if len(seen) > maxFiles {
			return fieldError("params", fmt.Sprintf("names more than %d files (limits.maxNodes)", maxFiles))
		}
		f, err := s.deps.Store.FileGet(ctx, prm.File.FileID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !admin && f.Owner != owner) {
			return fieldError("params."+prm.Key, "names file "+prm.File.FileID+", which does not exist; upload it with POST /api/files/upload")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func fieldError(field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_field", Message: field + ": " + msg, Data: map[string]string{"field": field}}
}

func workflowError(err error, lim config.Limits) error {
	var we *workflow.Error
	if !errors.As(err, &we) {
		return err
	}
	if errors.Is(err, workflow.ErrTooManyNodes) {
		return tooManyNodes(lim.MaxNodes, we.Error())
	}
	code := "invalid_workflow"
	if errors.Is(err, workflow.ErrFileReference) {
		code = "invalid_file_reference"
	}
	return &Error{Status: http.StatusBadRequest, Code: code, Message: we.Error(), Data: map[string]string{"field": we.Field}}
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return raw
	}
	return buf.Bytes()
}

// listTasks is GET /api/tasks.
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	statuses, err := parseStatuses(q.Get("status"))
	if err != nil {
		return err
	}
	limit, offset, err := parsePage(q)
	if err != nil {
		return err
	}
	p := &store.TaskListParams{Statuses: statuses, Limit: limit, Offset: offset}
	if c := claims(r); !c.IsAdmin() {
		p.Owner = c.Username
	}
	res, err := s.deps.Store.TaskList(r.Context(), p)
	if err != nil {
		return err
	}
	est := s.estimate(r.Context(), res.Items)
	items := make([]taskView, 0, len(res.Items))
	for _, t := range res.Items {
		v := s.makeTaskView(t)
		v.Workflow, v.Params = nil, nil
		if e, ok := est[t.ID]; ok {
			v.EstimatedStart, v.EstimatedFinish = timePtr(e.Start), timePtr(e.Finish)
		}
		items = append(items, v)
	}
	return writeJSON(w, map[string]any{"total": res.Total, "items": items, "limit": limit, "offset": offset})
}

func parseStatuses(raw string) ([]task.Status, error) {
	if raw == "" {
		return nil, nil
	}
	var out []task.Status
	for _, part := range strings.Split(raw, ",") {
		st := task.Status(strings.TrimSpace(part))
		if !st.Valid() {
			return nil, fieldError("status", "unknown status "+strconv.Quote(string(st))+"; use pending, running, completed, failed or cancelled, comma-separated")
		}
		out = append(out, st)
	}
	return out, nil
}

func parsePage(q map[string][]string) (limit, offset int, err error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	limit = store.DefaultListLimit
	if v := get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return 0, 0, fieldError("limit", "must be a whole number from 1 to 100")
		}
		limit = store.PageLimit(limit)
	}
	if v := get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fieldError("offset", "must be a whole number, 0 or more")
		}
	}
	return limit, offset, nil
}

// ownTask loads a task the caller may see; others' tasks read as missing.
func (s *Server) ownTask(r *http.Request) (*task.Task, error) {
	t, err := s.deps.Store.TaskGet(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "task_not_found", "No task %q.", r.PathValue("id"))
	}
	if err != nil {
		return nil, err
	}
	if c := claims(r); !c.IsAdmin() && t.Owner != c.Username {
		return nil, errorf(http.StatusNotFound, "task_not_found", "No task %q.", r.PathValue("id"))
	}
	return t, nil
}

// pinTask is POST /api/tasks/{id}/pin: retention keeps the task and its
// output files whatever their age.
func (s *Server) pinTask(w http.ResponseWriter, r *http.Request) error {
	return s.setTaskPin(w, r, true)
}

// unpinTask is DELETE /api/tasks/{id}/pin: retention applies again.
func (s *Server) unpinTask(w http.ResponseWriter, r *http.Request) error {
	return s.setTaskPin(w, r, false)
}

func (s *Server) setTaskPin(w http.ResponseWriter, r *http.Request, pinned bool) error {
	t, err := s.ownTask(r)
	if err != nil {
		return err
	}
	t, err = s.deps.Store.TaskPin(r.Context(), &store.PinParams{ID: t.ID, Pinned: pinned})
	if errors.Is(err, store.ErrNotFound) { // deleted meanwhile
		return errorf(http.StatusNotFound, "task_not_found", "No task %q.", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, s.makeTaskView(t))
}

// getTask is GET /api/tasks/{id}.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	t, err := s.ownTask(r)
	if err != nil {
		return err
	}
	v := s.makeTaskView(t)
	if t.Status != task.StatusPending {
		return writeJSON(w, v)
	}
	if e, ok := s.estimate(r.Context(), []*task.Task{t})[t.ID]; ok {
		v.QueuePosition = &e.Position
		v.EstimatedStart, v.EstimatedFinish = timePtr(e.Start), timePtr(e.Finish)
	} else if pos, err := s.deps.Store.TaskQueuePosition(r.Context(), t.ID); err == nil {
		v.QueuePosition = &pos
	}
	return writeJSON(w, v)
}

// estimate estimates the pending tasks among tasks; an estimate that
// fails is logged and left out, never the caller's error.
func (s *Server) estimate(ctx context.Context, tasks []*task.Task) map[string]eta.Estimate {
	if s.deps.Estimate == nil || !slices.ContainsFunc(tasks, func(t *task.Task) bool { return t.Status == task.StatusPending }) {
		return nil
	}
	est, err := s.deps.Estimate(ctx, s.now(), tasks)
	if err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "estimate tasks failed", "err", err)
	}
	return est
}

// cancelView is DELETE's answer: the task as it is now (cancelled, or
// still running with cancelRequested), with its id also as taskId.
type cancelView struct {
	taskView
	TaskID string `json:"taskId"`
}

// Messages of DELETE's answer.
const (
	msgCancelled       = "The task was cancelled."
	msgCancelRequested = "Cancel requested: the task is being interrupted on its instance and ends cancelled once the instance confirms."
)

// cancelTask is DELETE /api/tasks/{id}. A pending task is cancelled at
// once; a running one stays running, with cancelRequested, until its
// instance confirms the interrupt (task_cancelled then says so).
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.ownTask(r); err != nil {
		return err
	}
	// The store logs the cancel's events in its own step (LogEvents).
	t, err := s.deps.Store.TaskRequestCancel(r.Context(), &store.TaskCancelParams{ID: r.PathValue("id"), Now: s.now(), LogEvents: true})
	if errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, "task_finished", "The task has already finished; only pending and running tasks can be cancelled.")
	}
	if err != nil {
		return err
	}
	msg := msgCancelRequested
	if t.Status == task.StatusCancelled {
		msg = msgCancelled
	}
	return writeEnvelope(w, http.StatusOK, envelope{
		Code: http.StatusOK, Data: cancelView{taskView: s.makeTaskView(t), TaskID: t.ID}, Message: msg,
	})
}
