package sqlitestore

import "context"

// Contexts.
//
// modernc.org/sqlite watches a cancelable context with a new goroutine for
// every statement, to interrupt the statement when the context ends, and
// database/sql adds one per transaction. Those watches cost more CPU than
// the store's statements themselves: about 13 µs of a 27 µs TaskGet, and a
// seventh of a task's store CPU (BenchmarkLifecycleCancelable), and every
// caller of the gateway passes a cancelable context. Interrupting a
// statement that runs for microseconds buys nothing; what a caller's context
// must bound is the wait for a connection, behind other calls or a stuck
// disk. So each call waits for its turn at a gate, for as long as its
// context allows, and then runs its statements with the context's
// cancellation detached (its values stay). A call that has started
// finishes; a wait for a lock held by another process ends at busy_timeout.

// gate admits as many calls at once as its *sql.DB has connections, so that
// the calls it admits never wait for one.
type gate chan struct{}

// enter waits for a turn for as long as ctx allows and returns the context
// to run the call's statements with: ctx without its cancellation. A
// successful enter must be followed by leave.
func (g gate) enter(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case g <- struct{}{}:
		return context.WithoutCancel(ctx), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// leave ends a turn.
func (g gate) leave() { <-g }
