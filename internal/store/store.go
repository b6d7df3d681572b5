// Package store defines the persistence seam of the gateway: tasks and the
// queue, instance runtime state, the instances' node catalogues, file
// records, the persisted runtime config, leases, webhook subscriptions and
// their deliveries, and an event channel. Two
// implementations exist: sqlitestore (the embedded default) and redisstore
// (shared by several replicas). Both pass the same conformance suite in
// storetest.
//
// Times go in and out in UTC at millisecond precision: a store truncates
// sub-millisecond parts and returns the zero time for "not yet".
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/apikey"
	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Sentinel errors. Implementations translate their own errors into these at
// their edge; callers branch on them with errors.Is.
var (
	// ErrNotFound: no record with that id (or no pending task to claim).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the record exists but is not in a state that allows the change
	// (a duplicate id, a finished task, a lease held by someone else).
	ErrConflict = errors.New("store: conflict")
	// ErrUnavailable: the backing store cannot be reached.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrNoneRunnable is the ErrNotFound of a claim while tasks are pending
	// but none of them can run on the claiming instance: another instance
	// may claim them (errors.Is(ErrNoneRunnable, ErrNotFound) holds).
	ErrNoneRunnable = fmt.Errorf("%w: nothing pending the instance can run", ErrNotFound)
	// ErrLimit: the write would pass a limit the caller set in its params
	// (TaskInsertParams.MaxPending); nothing was written.
	ErrLimit = errors.New("store: limit reached")
	// ErrEventsGone: the event log no longer holds the events asked for
	// (EventsAfter): they were trimmed (EventLogSize).
	ErrEventsGone = errors.New("store: events no longer kept")
)

// Page sizes of TaskList and FileList: a Limit of zero or less means
// DefaultListLimit, a larger one is capped at MaxListLimit, and a negative
// Offset counts as zero.
const (
	DefaultListLimit = 20
	MaxListLimit     = 100
)

// PageLimit applies DefaultListLimit and MaxListLimit to a requested limit.
func PageLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return min(limit, MaxListLimit)
}

// Store is everything the gateway persists or shares between replicas.
type Store interface {
	TaskStore
	InstanceStore
	CatalogStore
	CapStore
	FileStore
	KeyStore
	UsageStore
	RetentionStore
	ConfigStore
	LeaseStore
	WebhookStore
	PubSub

	// Driver names the implementation: "sqlite" or "redis".
	Driver() string
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// TaskStore keeps tasks and is the queue.
type TaskStore interface {
	// TaskInsert adds a pending task. A duplicate id is ErrConflict; an
	// owner already at p.MaxPending pending tasks is ErrLimit, checked in
	// the same atomic step as the insert.
	TaskInsert(ctx context.Context, p *TaskInsertParams) (*task.Task, error)
	// TaskInsertClaim is TaskInsert followed by TaskClaim(c), in the same
	// atomic step: it returns the inserted task and the task claimed for
	// c.InstanceID, the new one or one ahead of it in line, or nil when
	// nothing could be claimed there (TaskClaim's ErrNotFound is no error
	// here). A failed insert claims nothing. When c.Events' events cannot
	// be logged after the step (Redis, see TaskClaimParams.Events), the
	// error comes with both tasks: both were applied. Any other error but
	// a refusal (ErrConflict, ErrLimit) may come from a step that was
	// applied with its answer lost (ErrUnavailable): a task may then be
	// running for c.InstanceID that the caller does not know of.
	TaskInsertClaim(ctx context.Context, p *TaskInsertParams, c *TaskClaimParams) (inserted, claimed *task.Task, err error)
	// TaskGet returns one task with its workflow and params.
	TaskGet(ctx context.Context, id string) (*task.Task, error)
	// TaskList pages through tasks, newest first (CreatedAt then Seq,
	// descending). Items leave out Workflow and Params.
	TaskList(ctx context.Context, p *TaskListParams) (*TaskListResult, error)
	// TaskQueuePosition is the 1-based position of a pending task in rank
	// order (see Rank; Seq breaks ties). Fair share between owners and
	// warm-model placement may take a task out of that order, so it is an
	// estimate of how many tasks go first. ErrConflict if the task is not
	// pending.
	TaskQueuePosition(ctx context.Context, id string) (int, error)
	// TaskQueuePositions is TaskQueuePosition of several tasks, read at
	// once: the positions of those pending, by id (the others are left
	// out). It costs about one TaskQueuePosition of the deepest of them.
	TaskQueuePositions(ctx context.Context, ids []string) (map[string]int, error)
	// TaskQueueHead lists the first p.Limit pending tasks in the order of
	// TaskQueuePosition (the head first), each with its placement
	// requirement and nothing else: what an estimate of the wait in the
	// queue needs, at a cost bounded by p.Limit whatever the queue's length.
	TaskQueueHead(ctx context.Context, p *TaskQueueHeadParams) ([]QueuedTask, error)
	// TaskClaim atomically takes the next pending task that p.InstanceID
	// can run and marks it running there under a lease, with Attempts+1 and
	// StartedAt = p.Now. ErrNotFound when nothing is pending; ErrNoneRunnable
	// (an ErrNotFound) when tasks are pending but none can run there.
	//
	// Capability comes first: the instance considers only the pending tasks
	// without a placement requirement (CapKey "") and those whose
	// requirement is recorded as runnable there (CapStore). Among those, the
	// next task is chosen in two steps. Fair share: among the owners with
	// such tasks, the one with the fewest running tasks goes first, then the
	// one whose last claim is the oldest (round robin; never served counts
	// as oldest; ties by owner name), and its runnable pending task of
	// lowest (Rank, Seq) is the head. Warm model: when p.Checkpoint is set
	// and the head needs another one, the same owner's runnable pending task
	// of lowest rank whose CheckpointKey is p.Checkpoint is taken instead,
	// if its rank is at most the head's plus p.WarmWindow. Warm placement
	// thus never crosses owners, and a task is passed only by its owner's
	// tasks of bounded rank, so none waits forever while an instance that
	// can run it claims.
	TaskClaim(ctx context.Context, p *TaskClaimParams) (*task.Task, error)
	// TaskProgress raises a running task's progress (never lowers it),
	// capped at 99: only completion makes it 100. ErrConflict if the task is
	// not running.
	TaskProgress(ctx context.Context, p *TaskProgressParams) error
	// TaskRenewLease extends the lease of a running task held by
	// p.LeaseOwner, or with p.Takeover gives it to p.LeaseOwner whoever held
	// it. ErrConflict if the task is not running or (without Takeover) held
	// by another owner.
	//
	// The task's lease owner is the fence of its run: the dispatcher finishes
	// and requeues a task only as its lease owner, and a replica that adopts
	// an instance takes over the leases of the tasks it reattaches there, so
	// a replica that lost the instance can no longer change them.
	TaskRenewLease(ctx context.Context, p *TaskLeaseParams) error
	// TaskFinish moves a task to a final status if its current status is one
	// of p.From (and, when p.LeaseOwner is set, the lease is held by it);
	// otherwise ErrConflict. It clears the lease and sets FinishedAt; To
	// completed sets Progress to 100, any other status raises it to
	// p.Progress (capped at 99, never lowered). A final task never moves
	// (task.CanMove). In the same atomic step it logs and publishes the
	// task's final events (event.Final: task_status, then task_completed,
	// task_failed or task_cancelled), stamped p.Now, and queues their
	// webhook deliveries (WebhookStore), so a caller killed right after the
	// change cannot lose them; the caller publishes nothing more.
	TaskFinish(ctx context.Context, p *TaskFinishParams) (*task.Task, error)
	// TaskRequeue returns a running task to pending (instance and lease
	// cleared, attempts kept, progress raised to p.Progress as TaskFinish
	// does) so another instance can take it. ErrConflict unless running (and
	// held by p.LeaseOwner when set).
	TaskRequeue(ctx context.Context, p *TaskRequeueParams) (*task.Task, error)
	// TaskRequestCancel cancels a pending task at once (status cancelled) or
	// marks a running one CancelRequested (status unchanged). ErrConflict
	// for a finished task.
	TaskRequestCancel(ctx context.Context, p *TaskCancelParams) (*task.Task, error)
	// TaskListRunning returns running tasks, optionally only those on one
	// instance or those whose lease expired before a time.
	TaskListRunning(ctx context.Context, p *TaskListRunningParams) ([]*task.Task, error)
	// TaskCounts counts tasks by status (every status present, zero included).
	TaskCounts(ctx context.Context) (map[task.Status]int, error)
}

// TaskInsertParams describes a new task. Status is pending.
type TaskInsertParams struct {
	ID          string
	Owner       string
	Priority    int
	Workflow    json.RawMessage
	Params      json.RawMessage
	Checkpoints []string
	// Requires are the labels an instance needs to run the task; nil for any.
	Requires map[string]string
	// Cap is the task's placement requirement: only the instances the store
	// records as able to run it (CapStore) claim the task. Nil: any instance.
	Cap     *CapParams
	Timeout time.Duration
	// Aging is the wait that counts as one priority point (see Rank); zero
	// means strict priority.
	Aging time.Duration
	// MaxPending, when above zero, bounds the owner's pending tasks: with
	// that many pending already, the insert is ErrLimit.
	MaxPending int
	Now        time.Time
	// Events are logged and published in the insert's own atomic step
	// (the new task's task_status and task_queued), numbered like
	// Publish's; none when the insert fails.
	Events []event.Event
}

// Priority bounds: a task's priority is clamped to them for ranking, so a
// rank never overflows.
const (
	MinPriority = -1_000_000
	MaxPriority = 1_000_000
)

// strictAging stands for "no aging": a priority point is worth more waiting
// than any queue will see (about two years), so priority is strict.
const strictAging = 1 << 36 * time.Millisecond

// Rank is a task's place in claim order, lower first: its creation time in
// Unix ms minus its priority times the aging step. Waiting one aging step
// is worth one priority point, so a low-priority task is passed by
// higher-priority ones submitted after it only for a bounded time
// (priority difference × aging), and the rank never changes after submit:
// the queue stays an index, not a sort at claim time. Aging zero is strict
// priority. Priority is clamped to [MinPriority, MaxPriority] and aging to
// about two years.
func Rank(priority int, created time.Time, aging time.Duration) int64 {
	if aging <= 0 || aging > strictAging {
		aging = strictAging
	}
	priority = max(MinPriority, min(priority, MaxPriority))
	return created.UnixMilli() - int64(priority)*aging.Milliseconds()
}

// TaskListParams filters and pages TaskList.
type TaskListParams struct {
	// Statuses keeps tasks in any of these statuses; empty keeps all.
	Statuses []task.Status
	// Owner keeps one owner's tasks; empty keeps all owners.
	Owner  string
	Limit  int
	Offset int
}

// TaskListResult is one page and the total that matched.
type TaskListResult struct {
	Total int
	Items []*task.Task
}

// TaskQueueHeadParams bounds TaskQueueHead: Limit tasks at most (at least
// one; MaxQueueHead at most).
type TaskQueueHeadParams struct {
	Limit int
}

// MaxQueueHead caps TaskQueueHeadParams.Limit.
const MaxQueueHead = 1000

// QueueHeadLimit applies the bounds of TaskQueueHeadParams to a limit.
func QueueHeadLimit(limit int) int { return max(1, min(limit, MaxQueueHead)) }

// QueuedTask is a pending task as TaskQueueHead lists it.
type QueuedTask struct {
	ID string
	// CapKey names the task's placement requirement; "" for a task any
	// instance may run.
	CapKey string
}

// TaskClaimParams says who claims and for which instance. An instance
// stored as disabled (InstanceUpdate) claims nothing: ErrNoneRunnable
// while tasks are pending. The check is in the claim's own step, so a
// claim that a dispatcher started before it learnt of a disable cannot
// place a task there after the disable was written.
type TaskClaimParams struct {
	InstanceID string
	LeaseOwner string
	LeaseTTL   time.Duration
	// Checkpoint is the CheckpointKey of the model the instance has loaded,
	// empty if none or unknown: a task needing it may go before the head.
	Checkpoint string
	// WarmWindow bounds how far (in rank, so in submit time at equal
	// priority) a task that needs Checkpoint may jump ahead of the head.
	// Zero turns warm-model placement off; the Redis store caps it at 2^32-1
	// ms (49 days).
	WarmWindow time.Duration
	Now        time.Time
	// LogRunning logs the claimed task's task_status (running,
	// event.StatusOf) in the claim's own atomic step, with its webhook
	// deliveries, numbered like Publish's (ClaimEvents).
	LogRunning bool
	// Instance, when set, is the claiming instance's state: the claim's
	// own atomic step logs its instance_status busy with the claimed task
	// (ClaimEvents), before the task_status. For a claim that makes an
	// idle instance busy.
	Instance *instance.State
	// Events, when set, builds more events of the claim from the claimed
	// task, logged after those above. On SQLite it is called and its events
	// logged in the claim's own atomic step, in the order of the store's
	// writes (as TaskFinishParams.Also), so it may also note there what
	// the step logged. On Redis it is called right after the claim's
	// script and its events are published in a call of their own: when
	// they cannot be, TaskClaim returns the claimed task with the error (it
	// is running there all the same). Not called when nothing is claimed.
	// As TaskFinishParams.Also, on SQLite it runs inside the store's
	// writer (quick, no blocking, no store call), and a claim whose
	// transaction is then undone returns an error, though Events ran.
	Events func(t *task.Task) ([]event.Event, error)
}

// ClaimEvents builds the events a claim of t logs for p.LogRunning and
// p.Instance, in their order: the instance_status of *p.Instance busy
// with t (event.Instance, owned by t's owner), then t's task_status
// (event.New of event.StatusOf), both stamped p.Now. The Redis store's
// claim script builds the same bytes.
func ClaimEvents(p *TaskClaimParams, t *task.Task) ([]event.Event, error) {
	var at int64
	if !p.Now.IsZero() {
		at = p.Now.UnixMilli()
	}
	var evs []event.Event
	if p.Instance != nil {
		st := *p.Instance
		st.Busy, st.CurrentTaskID = true, t.ID
		ev := event.Instance(st, t.Owner)
		ev.Time = at
		evs = append(evs, ev)
	}
	if p.LogRunning {
		ev, err := event.New(event.TypeTaskStatus, t, event.StatusOf(t))
		if err != nil {
			return nil, err
		}
		ev.Time = at
		evs = append(evs, ev)
	}
	return evs, nil
}

// TaskProgressParams raises a task's progress.
type TaskProgressParams struct {
	ID       string
	Progress int
	Now      time.Time
}

// TaskLeaseParams renews a running task's lease.
type TaskLeaseParams struct {
	ID         string
	LeaseOwner string
	LeaseTTL   time.Duration
	// Takeover gives the lease to LeaseOwner even when another owner holds it.
	Takeover bool
	Now      time.Time
}

// TaskFinishParams ends a task.
type TaskFinishParams struct {
	ID string
	// From lists the statuses the task may be in; anything else is ErrConflict.
	From []task.Status
	// To is completed, failed or cancelled.
	To task.Status
	// LeaseOwner, when set, must hold the task's lease.
	LeaseOwner string
	Result     *task.Result
	Error      *task.Error
	// Progress is the run's last progress, which throttled TaskProgress
	// writes may not have stored yet: a failed or cancelled task keeps what
	// clients saw.
	Progress int
	// Files are the records of the task's output files, added when the
	// finish succeeds: on SQLite in its transaction (one commit for the
	// task's end), on Redis just before it. A record whose id is already
	// stored is kept as it is (output file ids are stable per task, node
	// and index, so a second collection names the same files).
	Files []*file.File
	Now   time.Time
	// Also, when set, builds more events to log after the final ones, once
	// the finish is applied: on SQLite called and logged in the finish's
	// transaction, in the order of the store's writes; on Redis called and
	// published right after the finish's script, where a failure to
	// publish them is not the finish's: for state that a later event
	// restates (an instance's). Not called when the finish fails. On
	// SQLite it runs inside the store's writer: it must be quick, must not
	// block and must not call the store. A finish whose transaction is
	// then undone (the batch's commit failed) returns an error, though
	// Also ran.
	Also func() []event.Event
}

// TaskRequeueParams returns a running task to the queue.
type TaskRequeueParams struct {
	ID         string
	LeaseOwner string
	// RefundAttempt takes back the attempt the claim counted: the run never
	// reached the instance (it was unreachable at dispatch).
	RefundAttempt bool
	// Progress is the run's last progress (see TaskFinishParams.Progress).
	Progress int
	Now      time.Time
	// LogEvents logs and publishes the task's task_status (pending) and
	// task_queued in the requeue's own atomic step, as event.Pending
	// builds them.
	LogEvents bool
}

// TaskCancelParams asks a task to stop.
type TaskCancelParams struct {
	ID  string
	Now time.Time
	// LogEvents logs and publishes, in the cancel's own atomic step, the
	// events of what it did: a pending task's final events (event.Final),
	// or a running task's task_cancel_requested.
	LogEvents bool
}

// TaskListRunningParams filters TaskListRunning.
type TaskListRunningParams struct {
	// InstanceID keeps tasks on that instance; empty keeps all.
	InstanceID string
	// LeaseExpiredBefore, when not zero, keeps tasks whose lease expired before it.
	LeaseExpiredBefore time.Time
}

// InstanceStore keeps instance runtime state.
type InstanceStore interface {
	// InstanceList returns the state of every known instance, by id.
	InstanceList(ctx context.Context) ([]instance.State, error)
	// InstanceGet returns one instance's state; ErrNotFound if never stored.
	InstanceGet(ctx context.Context, id string) (instance.State, error)
	// InstanceUpdate applies the fields set in p, creating the record
	// (enabled, not alive) when missing, and returns the new state.
	InstanceUpdate(ctx context.Context, p *InstanceUpdateParams) (instance.State, error)
	// InstanceDelete forgets an instance; ErrNotFound if never stored.
	InstanceDelete(ctx context.Context, id string) error
}

// InstanceUpdateParams changes only the fields that are not nil, so the
// health checker, the dispatcher and an admin never overwrite each other.
type InstanceUpdateParams struct {
	ID               string
	Enabled          *bool
	Alive            *bool
	Busy             *bool
	CurrentTaskID    *string
	LastHeartbeat    *time.Time
	LastError        *string
	QueueRemaining   *int
	Failures         *int
	Device           *instance.Device
	LoadedCheckpoint *string
	// CatalogHash names the catalogue read from the instance (CatalogPut it first).
	CatalogHash *string
	// RunFailures, DrainReason, DrainedAt and AutoDrained are the automatic
	// drain's state (instance.State).
	RunFailures *int
	DrainReason *string
	DrainedAt   *time.Time
	AutoDrained *bool
}

// CatalogStore keeps node catalogues by content hash: identical catalogues
// of several instances are one record, and a record never changes.
type CatalogStore interface {
	// CatalogPut stores a catalogue under its hash unless that hash is
	// stored already (then nothing changes), and reports whether it stored it.
	CatalogPut(ctx context.Context, p *CatalogPutParams) (created bool, err error)
	// CatalogGet returns a stored catalogue; ErrNotFound if none has that hash.
	CatalogGet(ctx context.Context, hash string) (*catalog.Record, error)
}

// CapStore keeps the placement requirements of tasks (catalog.Requirement:
// what decides which instances can run a task) by key, and for each
// instance the requirements it can run. Many tasks share one requirement;
// the gateway records which instances can run it when it first stores it
// (TaskInsert) and again when an instance's catalogue or labels change
// (CapSetInstance). A claim by an instance considers only the pending tasks
// without a requirement and those whose requirement it can run.
type CapStore interface {
	// CapList returns every stored requirement (without Instances).
	CapList(ctx context.Context) ([]*Cap, error)
	// CapGet returns a requirement with the instances recorded as able to
	// run it; ErrNotFound for an unknown key.
	CapGet(ctx context.Context, key string) (*Cap, error)
	// CapSetInstance records which of the given requirements an instance
	// can run (Can) and cannot (Cannot); other requirements are left as
	// they are. Keys that are not stored are ignored.
	CapSetInstance(ctx context.Context, p *CapSetInstanceParams) error
}

// CapParams is the placement requirement of a new task. When the store
// does not have Key yet it stores Data under it and records Instances as
// the ones able to run it; when it has, it keeps what it has.
type CapParams struct {
	Key       string
	Data      []byte
	Instances []string
}

// Cap is a stored placement requirement.
type Cap struct {
	Key  string
	Data []byte
	// Instances are the instance ids recorded as able to run it, sorted
	// (CapGet only).
	Instances []string
	CreatedAt time.Time
}

// CapSetInstanceParams says which requirements one instance can run.
type CapSetInstanceParams struct {
	Instance    string
	Can, Cannot []string
}

// CatalogPutParams is one encoded catalogue.
type CatalogPutParams struct {
	// Hash is catalog.HashOf(Data).
	Hash string
	// Data is catalog.Catalog.Encode().
	Data []byte
	Now  time.Time
}

// FileStore keeps file records (the bytes live in the blob store).
type FileStore interface {
	// FileInsert adds a record; a duplicate id is ErrConflict.
	FileInsert(ctx context.Context, f *file.File) error
	FileGet(ctx context.Context, id string) (*file.File, error)
	// FileList pages through files, newest first.
	FileList(ctx context.Context, p *FileListParams) (*FileListResult, error)
	// FileDelete removes a record; ErrNotFound if there is none.
	FileDelete(ctx context.Context, id string) error
}

// FileListParams filters and pages FileList.
type FileListParams struct {
	Owner  string // empty keeps all owners
	TaskID string // empty keeps all
	Limit  int
	Offset int
}

// FileListResult is one page and the total that matched.
type FileListResult struct {
	Total int
	Items []*file.File
}

// KeyStore keeps API keys (apikey.Key): records with the hash of their
// secret, never the secret. A revoked key stays listed, so its owner sees
// what it was; revocation takes effect on the next read of the record, on
// every replica, since the gateway reads the record for every request made
// with a key.
type KeyStore interface {
	// KeyInsert adds a key; a duplicate id is ErrConflict.
	KeyInsert(ctx context.Context, k *apikey.Key) error
	// KeyGet returns one key, revoked or not; ErrNotFound if there is none.
	KeyGet(ctx context.Context, id string) (*apikey.Key, error)
	// KeyList returns the keys of p.Owner (every owner's when empty),
	// newest first (CreatedAt, then ID, descending).
	KeyList(ctx context.Context, p *KeyListParams) ([]*apikey.Key, error)
	// KeyRevoke sets a key's RevokedAt to p.Now unless it is revoked
	// already (the first revocation's time stays), and returns the key.
	// ErrNotFound if there is none.
	KeyRevoke(ctx context.Context, p *KeyRevokeParams) (*apikey.Key, error)
	// KeyTouch raises a key's LastUsedAt to p.Now (never lowers it).
	// ErrNotFound if there is none.
	KeyTouch(ctx context.Context, p *KeyTouchParams) error
}

// KeyListParams filters KeyList.
type KeyListParams struct {
	Owner string // empty keeps all owners
}

// KeyRevokeParams revokes one key.
type KeyRevokeParams struct {
	ID  string
	Now time.Time
}

// KeyTouchParams records a use of one key.
type KeyTouchParams struct {
	ID  string
	Now time.Time
}

// RetentionStore finds what retention prunes, deletes it, and pins what it
// must keep. The pruner deletes in bounded batches: it asks for the ids of
// at most Limit expired records, deletes their bytes (files), then their
// records, so a pruner stopped half way leaves records to prune again, not
// bytes nobody can find.
type RetentionStore interface {
	// TaskExpired returns the ids of at most p.Limit finished tasks
	// (completed, failed, cancelled) that finished before p.Before and are
	// not pinned, the oldest finished first.
	TaskExpired(ctx context.Context, p *ExpiredParams) ([]string, error)
	// FilePrune deletes a file record for retention, in one atomic step
	// only if neither the file nor its task (if any) is pinned: ErrConflict
	// when one is, ErrNotFound if there is no record.
	FilePrune(ctx context.Context, id string) error
	// TaskDelete deletes a finished, unpinned task for good, and in the
	// same atomic step its own webhook subscriptions and its webhook
	// deliveries (delivered, failed or still pending); its file records
	// are not touched (FileDelete them first). ErrNotFound if there is no
	// such task, ErrConflict if it is not finished or is pinned.
	TaskDelete(ctx context.Context, id string) error
	// FileExpired returns the ids of at most p.Limit file records created
	// before p.Before that are not pinned and whose task (if any) is not
	// pinned, the oldest first.
	FileExpired(ctx context.Context, p *ExpiredParams) ([]string, error)
	// TaskPin pins or unpins a task and returns it. ErrNotFound if none.
	TaskPin(ctx context.Context, p *PinParams) (*task.Task, error)
	// FilePin pins or unpins a file record and returns it. ErrNotFound if none.
	FilePin(ctx context.Context, p *PinParams) (*file.File, error)
}

// ExpiredParams asks for records older than Before, at most Limit of them
// (MaxExpiredLimit if zero or larger).
type ExpiredParams struct {
	Before time.Time
	Limit  int
}

// MaxExpiredLimit bounds one TaskExpired or FileExpired call.
const MaxExpiredLimit = 1000

// ExpiredLimit applies MaxExpiredLimit to a requested limit.
func ExpiredLimit(limit int) int {
	if limit <= 0 || limit > MaxExpiredLimit {
		return MaxExpiredLimit
	}
	return limit
}

// PinParams pins (Pinned true) or unpins one record.
type PinParams struct {
	ID     string
	Pinned bool
}

// UsageStore tells what one owner holds, for quotas. The counts are kept by
// the writes that change them, so reading them costs the same whatever the
// owner holds.
type UsageStore interface {
	// UsageGet returns p.Owner's usage; an owner with nothing has zero usage.
	UsageGet(ctx context.Context, p *UsageGetParams) (Usage, error)
}

// UsageGetParams names the owner whose usage UsageGet reads.
type UsageGetParams struct {
	Owner string
}

// Usage is what one owner holds.
type Usage struct {
	// Pending counts the owner's pending tasks.
	Pending int
	// StoredBytes sums the Size of the owner's file records (uploads and
	// task outputs).
	StoredBytes int64
}

// ConfigStore keeps the runtime config changed through PUT /api/config.
type ConfigStore interface {
	// ConfigGet returns the persisted config document; ErrNotFound if none.
	ConfigGet(ctx context.Context) ([]byte, error)
	ConfigPut(ctx context.Context, doc []byte) error
}

// LeaseStore provides named, expiring leases: the fleet's health-check
// leader, and which replica drives which instance.
type LeaseStore interface {
	// LeaseAcquire takes or renews the lease if it is free, expired or
	// already held by p.Holder, and reports whether p.Holder now holds it.
	LeaseAcquire(ctx context.Context, p *LeaseParams) (bool, error)
	// LeaseRelease gives the lease up if holder holds it, and does nothing
	// (no error) otherwise.
	LeaseRelease(ctx context.Context, name, holder string) error
}

// LeaseParams names a lease and its would-be holder.
type LeaseParams struct {
	Name   string
	Holder string
	TTL    time.Duration
	Now    time.Time
}

// PubSub carries events between the components of every replica, and
// keeps the events that report state changes (event.Logged) in an event
// log, numbered, so that a consumer can read on from a position.
//
// The log: every logged event gets the next sequence number (Event.Seq, 1
// and up, never reused) in the same atomic step that appends it, so the
// numbers give the order in which the store logged them. The log keeps the
// newest EventLogSize events (at least; a store may keep a few more), so a
// consumer that remembers the last Seq it handled reads on with
// EventsAfter from there, and learns with ErrEventsGone that it was away
// too long and must reload the state itself.
//
// Consuming durably, for example to forward task events elsewhere: keep the
// last Seq handled (durably, if the consumer must survive restarts);
// Subscribe first, then read EventsAfter(last) in pages until it returns
// fewer than asked; then take the subscription's events, skipping those
// numbered at or below what was read and reading the gap with EventsAfter
// when one numbered above last+1 arrives. Transient events (Seq 0) are
// only ever delivered live.
type PubSub interface {
	// Publish sends events to every subscriber of every replica. The
	// logged ones are appended to the event log, numbered one after the
	// other in their order, all in one atomic step, which also queues
	// their webhook deliveries (WebhookStore), and delivered in that
	// order; transient ones go out at once, ahead of them.
	Publish(ctx context.Context, evs ...event.Event) error
	// Subscribe receives every event published from now on until the
	// subscription is closed or ctx ends. Logged events arrive in Seq
	// order. Delivery is otherwise best effort: a subscriber that falls
	// more than its buffer behind loses events (the logged ones can be read
	// again with EventsAfter). The channel is closed when the subscription
	// is closed, ctx ends or the store is closed.
	Subscribe(ctx context.Context) (Subscription, error)
	// EventsAfter returns the logged events numbered above p.After, oldest
	// first, at most p.Limit of them (MaxEventsPage if zero or larger).
	// ErrEventsGone (wrapped) when the first of them is no longer kept.
	EventsAfter(ctx context.Context, p *EventsAfterParams) ([]event.Event, error)
	// LastEventSeq is the number of the newest logged event; 0 before the first.
	LastEventSeq(ctx context.Context) (int64, error)
}

// EventLogSize is how many logged events a store keeps at least: at a few
// events per task, the events of the last tens of thousands of tasks.
const EventLogSize = 100_000

// MaxEventsPage bounds one EventsAfter call.
const MaxEventsPage = 1000

// EventsAfterParams reads the event log from a position.
type EventsAfterParams struct {
	// After is the Seq of the last event the reader has; 0 reads from the
	// start (ErrEventsGone once the first events were trimmed).
	After int64
	Limit int
}

// EventsPageLimit applies MaxEventsPage to a requested limit.
func EventsPageLimit(limit int) int {
	if limit <= 0 || limit > MaxEventsPage {
		return MaxEventsPage
	}
	return limit
}

// Subscription is a stream of events.
type Subscription interface {
	C() <-chan event.Event
	Close() error
}
