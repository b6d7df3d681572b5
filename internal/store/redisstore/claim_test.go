package redisstore

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// commandLog is a go-redis hook that records the commands a client sends.
type commandLog struct {
	mu    sync.Mutex
	names []string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.record(cmd.Name())
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.record("pipeline")
		return next(ctx, cmds)
	}
}

func (l *commandLog) record(name string) {
	l.mu.Lock()
	l.names = append(l.names, name)
	l.mu.Unlock()
}

// take returns the commands recorded since the last take.
func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := l.names
	l.names = nil
	return names
}

// TestClaimIsOneCall: a claim that logs its events (LogRunning, Instance)
// is one script call, and so is an insert that claims: the events and
// their webhook deliveries are written by the script that claims, so no
// replica can claim without logging them, and the run waits for no
// second round trip.
func TestClaimIsOneCall(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustOK(t, s.WebhookSubInsert(ctx, &store.WebhookSub{ID: "wh-1", Owner: "alice", URL: "https://example.com/hook",
		Secret: "whsec_c2VjcmV0", CreatedAt: t0}))
	for _, sc := range []*redis.Script{insertTaskScript, claimTaskScript, insertClaimTaskScript} {
		mustOK(t, sc.Load(ctx, s.rdb).Err()) // EVALSHA finds them: one command a call
	}
	log := &commandLog{}
	s.rdb.AddHook(log)
	claim := func(now time.Time) *store.TaskClaimParams {
		return &store.TaskClaimParams{InstanceID: "i-1", LeaseOwner: "r", LeaseTTL: time.Minute, Now: now,
			LogRunning: true, Instance: &instance.State{ID: "i-1", Alive: true, Enabled: true}}
	}

	insertTask(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	log.take()
	tk, err := s.TaskClaim(ctx, claim(at(1)))
	mustOK(t, err)
	if got := log.take(); len(got) != 1 {
		t.Errorf("TaskClaim sent %v, want one script call", got)
	}

	_, claimed, err := s.TaskInsertClaim(ctx, &store.TaskInsertParams{ID: uuid.NewString(), Owner: "alice",
		Workflow: []byte(`{}`), Now: at(2)}, claim(at(2)))
	mustOK(t, err)
	if claimed == nil {
		t.Fatal("TaskInsertClaim claimed nothing")
	}
	if got := log.take(); len(got) != 1 {
		t.Errorf("TaskInsertClaim sent %v, want one script call", got)
	}

	// Both claims logged their events and queued their deliveries.
	for _, id := range []string{tk.ID, claimed.ID} {
		ds, err := s.WebhookDeliveries(ctx, id)
		mustOK(t, err)
		if len(ds) != 1 || ds[0].EventID != "evt_"+id+"_running.1" {
			t.Errorf("deliveries of %s = %v, want its task.running", id, ds)
		}
	}
}
