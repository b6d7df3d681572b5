package dispatch

import "time"

// RunStages is where the time of a completed run went, as this replica saw
// it (Metrics.RunStage). The stages follow each other; together they are
// the run from just after its claim to the task's final status. A frame's
// stamp is taken when the run handles it, a moment after it arrived.
type RunStages struct {
	// Submit: from the claim to ComfyUI's answer to POST /prompt (the
	// prompt prepared, its input files sent, the request and its answer).
	Submit time.Duration
	// Queued: from that answer to the prompt's start there (its
	// execution_start): the wait behind a prompt ahead of it (prefetch, or
	// other clients').
	Queued time.Duration
	// Execution: from its start to ComfyUI's end of it (executing with a
	// null node), as the frames reached this replica.
	Execution time.Duration
	// Collect: from that end to the outputs copied into the file store.
	Collect time.Duration
	// Finish: the store step that ends the task and publishes its events.
	Finish time.Duration
}

// report hands each stage to m.
func (s RunStages) report(m Metrics) {
	m.RunStage(StageSubmit, s.Submit)
	m.RunStage(StageQueued, s.Queued)
	m.RunStage(StageExecution, s.Execution)
	m.RunStage(StageCollect, s.Collect)
	m.RunStage(StageFinish, s.Finish)
}

// stageClock stamps a run's stages as they pass. The run's goroutine
// stamps the first four; the collection, on its own goroutine, gets a copy
// and stamps the rest.
type stageClock struct {
	claimed, submitted, began, ended, collected, finished time.Time
}

// stages returns the durations between the stamps; false when a stamp is
// missing (a reattached run, a run read from /history).
func (c *stageClock) stages() (RunStages, bool) {
	for _, t := range []time.Time{c.claimed, c.submitted, c.began, c.ended, c.collected, c.finished} {
		if t.IsZero() {
			return RunStages{}, false
		}
	}
	return RunStages{
		Submit: c.submitted.Sub(c.claimed), Queued: c.began.Sub(c.submitted), Execution: c.ended.Sub(c.began),
		Collect: c.collected.Sub(c.ended), Finish: c.finished.Sub(c.collected),
	}, true
}
