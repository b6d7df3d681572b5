package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TaskClaim marks the next pending task (fair share, then warm model)
// running on p.InstanceID: a few ZSET reads, whatever the queue's length.
// The script logs the claim's events (p.LogRunning, p.Instance); p.Events'
// are published after it.
func (s *Store) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	keys, args := s.claimArgs(p)
	reply, err := claimTaskScript.Run(ctx, s.rdb, keys, args...).Result()
	if err != nil {
		return nil, wrap(err, "claim task for %s", p.InstanceID)
	}
	t, err := taskReply(reply)
	if err != nil {
		return nil, wrap(err, "claim task for %s", p.InstanceID)
	}
	// Claimed: on an error the caller runs the task all the same; REST
	// shows it running.
	return t, s.publishClaimEvents(ctx, p, t)
}

// publishClaimEvents publishes the events p.Events builds for t, claimed
// by a script.
func (s *Store) publishClaimEvents(ctx context.Context, p *store.TaskClaimParams, t *task.Task) error {
	if p.Events == nil {
		return nil
	}
	evs, err := p.Events(t)
	if err == nil && len(evs) > 0 {
		err = s.Publish(ctx, evs...)
	}
	if err != nil {
		return fmt.Errorf("redisstore: log the events of the claim of %s: %w", t.ID, err)
	}
	return nil
}

// claimArgs builds the KEYS and ARGV of claimTaskScript.
func (s *Store) claimArgs(p *store.TaskClaimParams) ([]string, []any) {
	return []string{s.keys.queue(), s.keys.eventLog(), s.keys.eventSeq()}, append([]any{s.keys.prefix}, s.claimArgv(p)...)
}

// claimArgv are the arguments of luaClaim's claim_task.
func (s *Store) claimArgv(p *store.TaskClaimParams) []any {
	window := min(p.WarmWindow.Milliseconds(), 1<<32-1)
	ckpt := p.Checkpoint
	if window <= 0 {
		ckpt, window = "", 0
	}
	before, after := "", ""
	if p.Instance != nil {
		before, after = instanceData(*p.Instance)
	}
	return []any{p.InstanceID, p.LeaseOwner, msArg(p.Now), msArg(p.Now.Add(p.LeaseTTL)), ckpt, window,
		boolArg(p.LogRunning), before, after, s.keys.events(), s.logSize, webhookTimestamp(p.Now)}
}

// instanceData splits the data of the instance_status a claim logs for st
// (store.ClaimEvents) around the claimed task's id, which the script puts
// in: before ends with the currentTaskId field's name.
func instanceData(st instance.State) (before, after string) {
	st.Busy, st.CurrentTaskID = true, ""
	data, _ := json.Marshal(event.InstanceStatusOf(st)) // plain fields: cannot fail
	// No JSON string holds the field as it is written here, quotes and
	// all: a quote inside a string is escaped.
	const field = `"currentTaskId":`
	before, after, _ = strings.Cut(string(data), field+`""`)
	return before + field, after
}

// TaskProgress raises a running task's progress, capped at 99.
func (s *Store) TaskProgress(ctx context.Context, p *store.TaskProgressParams) error {
	err := progressTaskScript.Run(ctx, s.rdb, []string{s.keys.task(p.ID)},
		s.keys.prefix, p.Progress, msArg(p.Now)).Err()
	return wrap(err, "set progress of task %s", p.ID)
}

// TaskRenewLease extends the lease held by p.LeaseOwner.
func (s *Store) TaskRenewLease(ctx context.Context, p *store.TaskLeaseParams) error {
	err := renewLeaseScript.Run(ctx, s.rdb, []string{s.keys.task(p.ID)},
		s.keys.prefix, p.ID, p.LeaseOwner, msArg(p.Now.Add(p.LeaseTTL)), boolArg(p.Takeover)).Err()
	return wrap(err, "renew lease of task %s", p.ID)
}

// TaskFinish moves a task from one of p.From to the final status p.To.
func (s *Store) TaskFinish(ctx context.Context, p *store.TaskFinishParams) (*task.Task, error) {
	if !p.To.Final() {
		return nil, fmt.Errorf("redisstore: finish task %s: %q is not a final status", p.ID, p.To)
	}
	result, err := jsonArg(p.Result)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	taskErr, err := jsonArg(p.Error)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	// The records go first: a finish that then fails leaves them, as
	// FileInsert calls before it would (a second collection keeps them).
	for _, f := range p.Files {
		if err := s.FileInsert(ctx, f); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
	}
	args := []any{s.keys.prefix, p.ID, string(p.To), msArg(p.Now), p.LeaseOwner, result, taskErr, p.Progress,
		s.keys.events(), s.logSize, webhookTimestamp(p.Now)}
	for _, st := range movableFrom(p.From, p.To) {
		args = append(args, string(st))
	}
	reply, err := finishTaskScript.Run(ctx, s.rdb, []string{s.keys.task(p.ID), s.keys.eventLog(), s.keys.eventSeq()}, args...).Result()
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	t, err := taskReply(reply)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	if p.Also != nil {
		if also := p.Also(); len(also) > 0 {
			// The finish stands whatever happens here: the task's own
			// events are logged with it; Also's are state an event to
			// come restates (TaskFinishParams.Also).
			_ = s.Publish(ctx, also...)
		}
	}
	return t, nil
}

// webhookTimestamp is the timestamp of the webhook payloads of the events
// a script stamps with now (store.WebhookEventOf).
func webhookTimestamp(now time.Time) string { return store.WebhookTimestamp(time.UnixMilli(ms(now))) }

// jsonArg encodes v as a script argument; nil is "".
func jsonArg[T any](v *T) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// movableFrom keeps the statuses of from that may move to `to`; a final
// status never moves.
func movableFrom(from []task.Status, to task.Status) []task.Status {
	out := make([]task.Status, 0, len(from))
	for _, st := range from {
		if task.CanMove(st, to) && !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	return out
}

// TaskRequeue returns a running task to pending, keeping its attempts
// (unless p.RefundAttempt) and its place in line.
func (s *Store) TaskRequeue(ctx context.Context, p *store.TaskRequeueParams) (*task.Task, error) {
	refund := "0"
	if p.RefundAttempt {
		refund = "1"
	}
	logEvents := "0"
	if p.LogEvents {
		logEvents = "1"
	}
	args := []any{s.keys.prefix, p.ID, p.LeaseOwner, msArg(p.Now), refund, p.Progress, logEvents, s.keys.events(), s.logSize,
		webhookTimestamp(p.Now)}
	reply, err := requeueTaskScript.Run(ctx, s.rdb, []string{s.keys.task(p.ID), s.keys.eventLog(), s.keys.eventSeq()}, args...).Result()
	if err != nil {
		return nil, wrap(err, "requeue task %s", p.ID)
	}
	t, err := taskReply(reply)
	return t, wrap(err, "requeue task %s", p.ID)
}

// TaskRequestCancel cancels a pending task or marks a running one CancelRequested.
func (s *Store) TaskRequestCancel(ctx context.Context, p *store.TaskCancelParams) (*task.Task, error) {
	logEvents := "0"
	if p.LogEvents {
		logEvents = "1"
	}
	args := []any{s.keys.prefix, p.ID, msArg(p.Now), logEvents, s.keys.events(), s.logSize, webhookTimestamp(p.Now)}
	reply, err := cancelTaskScript.Run(ctx, s.rdb, []string{s.keys.task(p.ID), s.keys.eventLog(), s.keys.eventSeq()}, args...).Result()
	if err != nil {
		return nil, wrap(err, "cancel task %s", p.ID)
	}
	t, err := taskReply(reply)
	return t, wrap(err, "cancel task %s", p.ID)
}

// TaskListRunning returns running tasks in claim order (Seq), from the
// lease index or the instance's running set.
func (s *Store) TaskListRunning(ctx context.Context, p *store.TaskListRunningParams) ([]*task.Task, error) {
	before := ""
	if !p.LeaseExpiredBefore.IsZero() {
		before = strconv.FormatInt(ms(p.LeaseExpiredBefore), 10)
	}
	reply, err := listRunningScript.Run(ctx, s.rdb, []string{s.keys.leases()},
		s.keys.prefix, p.InstanceID, before).Slice()
	if err != nil {
		return nil, wrap(err, "list running tasks")
	}
	tasks := make([]*task.Task, 0, len(reply))
	for _, item := range reply {
		t, err := taskReply(item)
		if err != nil {
			return nil, wrap(err, "list running tasks")
		}
		tasks = append(tasks, t)
	}
	slices.SortFunc(tasks, func(a, b *task.Task) int { return cmp.Compare(a.Seq, b.Seq) })
	return tasks, nil
}

// TaskInsertClaim is TaskInsert, then TaskClaim, in one script; c.Events'
// events are published after it.
func (s *Store) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	keys, args, err := s.insertArgs(p)
	if err != nil {
		return nil, nil, wrap(err, "insert task %s", p.ID)
	}
	args = slices.Concat(args[:1], s.claimArgv(c), args[1:])
	reply, err := insertClaimTaskScript.Run(ctx, s.rdb, append(keys, s.keys.queue()), args...).Slice()
	if err != nil {
		return nil, nil, wrap(err, "insert task %s", p.ID)
	}
	var seq int64
	if len(reply) > 0 {
		seq, _ = reply[0].(int64)
	}
	if seq == 0 {
		return nil, nil, fmt.Errorf("redisstore: insert task %s: unexpected reply %v", p.ID, reply)
	}
	t := inserted(p, seq)
	if len(reply) < 2 {
		return t, nil, nil
	}
	claimed, err := taskReply(reply[1])
	if err != nil {
		return t, nil, wrap(err, "claim task for %s", c.InstanceID)
	}
	return t, claimed, s.publishClaimEvents(ctx, c, claimed)
}
