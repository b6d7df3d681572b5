package dispatch

import (
	"time"

	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Metrics receives what the dispatcher of this replica did, as it happens.
// Calls are made on the run's goroutine and must be quick. Options.Metrics
// nil means none.
type Metrics interface {
	// TaskClaimed: t was claimed by this replica and its run starts (t.StartedAt is set).
	TaskClaimed(t *task.Task)
	// TaskFinished: t reached a final status in a run this replica drove.
	TaskFinished(t *task.Task)
	// TaskRequeued: a run of t went back to the queue for reason (a Requeue* value).
	TaskRequeued(t *task.Task, reason string)
	// CheckpointSwitched: a run starts on an instance that last loaded
	// another checkpoint (or none known), so the instance loads a model.
	CheckpointSwitched()
	// SocketDeaf: an instance's WebSocket delivered no frame after a submit
	// and was reconnected.
	SocketDeaf()
	// InstanceSuspect: an instance still held a prompt a grace period after
	// it was interrupted; the task was ended and the instance held.
	InstanceSuspect()
	// RunStage: a run this replica submitted, and followed frame by frame
	// to its end, completed its task; it spent d in stage (a Stage* value;
	// RunStages says what each one covers). Called once per stage.
	RunStage(stage string, d time.Duration)
}

// The stages of a completed run (RunStages).
const (
	StageSubmit    = "submit"
	StageQueued    = "queued"
	StageExecution = "execution"
	StageCollect   = "collect"
	StageFinish    = "finish"
)

// Why a run went back to the queue.
const (
	RequeueUnreachable  = "instance_unreachable" // the instance refused the submit
	RequeueInputsFailed = "inputs_failed"        // input files could not be sent to the instance
	RequeuePromptGone   = "prompt_gone"          // the instance no longer holds the prompt
	RequeueInstanceLost = "instance_lost"        // health declared the instance dead mid-run
	RequeuePulledBack   = "prefetch_pulled_back" // a prefetched prompt was taken back from the instance's queue
	RequeueLeaseLost    = "lease_lost"           // the instance lease ran low between claim and submit
	RequeueIncapable    = "instance_incapable"   // the instance refused a prompt another instance can run
)

type noMetrics struct{}

func (noMetrics) TaskClaimed(*task.Task)          {}
func (noMetrics) TaskFinished(*task.Task)         {}
func (noMetrics) TaskRequeued(*task.Task, string) {}
func (noMetrics) CheckpointSwitched()             {}
func (noMetrics) SocketDeaf()                     {}
func (noMetrics) InstanceSuspect()                {}
func (noMetrics) RunStage(string, time.Duration)  {}
