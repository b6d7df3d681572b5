package dispatch

// ReadyInstances counts the instances that would take a task now.
func (d *Dispatcher) ReadyInstances() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, dr := range d.drivers {
		if dr.ready(d.settings.Prefetch) {
			n++
		}
	}
	return n
}

// QueuedSeen counts the task_queued events the scheduler counted (its
// queue memory).
func (d *Dispatcher) QueuedSeen() uint64 { return d.queue.mark() }
