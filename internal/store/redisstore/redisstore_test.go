package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
	"github.com/comfyfleet/comfyfleet/internal/store/storetest"
)

// Run with: TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -race ./internal/store/redisstore/

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a store on TEST_REDIS_URL under a prefix of the test's own,
// closed and deleted at cleanup.
func open(tb testing.TB, opts ...Option) *Store {
	tb.Helper()
	u := redistest.URL(tb)
	s, err := Open(context.Background(), u, append([]Option{WithPrefix(redistest.Prefix(tb, u))}, opts...)...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// admin is a client on TEST_REDIS_URL for checks behind the store's back.
func admin(tb testing.TB) *redis.Client {
	tb.Helper()
	rdb, err := redistest.Client(redistest.URL(tb))
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

func mustOK(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	redistest.URL(t) // skip or fail once, not in every subtest
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestConformanceConfinedToPrefix runs the whole suite as a Redis ACL user
// that may touch only keys and channels under one prefix: any key a script
// or a command builds outside the prefix fails with NOPERM.
func TestConformanceConfinedToPrefix(t *testing.T) {
	u := redistest.URL(t)
	parent := redistest.Prefix(t, u)
	confined := aclUser(t, "~"+parent+"*", "&"+parent+"*", "+@all")
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), confined, WithPrefix(fmt.Sprintf("%s%d:", parent, n.Add(1))))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
	t.Cleanup(func() { // after the subtests: the suite did write under the prefix
		keys, err := redistest.Keys(context.Background(), admin(t), parent)
		mustOK(t, err)
		if len(keys) == 0 {
			t.Error("no key under the prefix after the suite; is the check checking anything?")
		}
	})
}

// aclUser creates a Redis user with rules for the test and returns
// TEST_REDIS_URL logged in as it. It skips the test when the server does
// not let us create users (a managed Redis, an older server).
func aclUser(t *testing.T, rules ...string) string {
	t.Helper()
	rdb := admin(t)
	name, pass := "comfyfleet-test-"+uuid.NewString(), uuid.NewString()
	args := append([]any{"ACL", "SETUSER", name, "reset", "on", ">" + pass}, toAny(rules)...)
	if err := rdb.Do(t.Context(), args...).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot create a Redis ACL user in CI (Redis 6+ is needed): %v", err)
		}
		t.Skipf("cannot create a Redis ACL user for this test: %v", err)
	}
	t.Cleanup(func() {
		if err := rdb.Do(context.Background(), "ACL", "DELUSER", name).Err(); err != nil {
			t.Errorf("ACL DELUSER: %v", err)
		}
	})
	parsed, err := url.Parse(redistest.URL(t))
	mustOK(t, err)
	parsed.User = url.UserPassword(name, pass)
	return parsed.String()
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestKeyBuildersAgree checks that the Lua key builders name the same keys
// as the Go ones.
func TestKeyBuildersAgree(t *testing.T) {
	s := open(t)
	k := s.keys
	const id, owner, inst = "3f1c0d52-0000-4000-8000-000000000001", "al:ice", "10.0.0.1:8001"
	want := []string{
		k.task(id), k.queue(), k.list("pending"), k.list(allTasks), k.ownerList("failed", owner),
		k.ownerList(allTasks, owner), k.leases(), k.runningOn(inst), k.instance(inst), k.file(id),
		k.files(), k.ownerFiles(owner), k.taskFiles(id), k.ownerQueue(owner), k.ckptQueue(owner, "a|b"), k.queueOwners(),
		k.ownerRunning(), k.ownerServed(), k.servedSerial(), k.fileBytes(),
		k.capQueue(owner, "c1"), k.capCkptQueue(owner, "c1", "a|b"), k.ownerCaps(owner), k.capsVersion(),
		k.cap("c1"), k.caps(), k.capOn("c1"), k.capable(inst),
	}
	sc := script(luaKeys, `local id, owner, inst = ARGV[2], ARGV[3], ARGV[4]
return {key_task(id), key_queue(), key_list('pending'), key_list('all'), key_owner_list('failed', owner),
  key_owner_list('all', owner), key_leases(), key_running_on(inst), key_instance(inst), key_file(id),
  key_files(), key_owner_files(owner), key_task_files(id), key_owner_queue(owner), key_ckpt_queue(owner, 'a|b'),
  key_queue_owners(), key_owner_running(), key_owner_served(), key_served_serial(), key_file_bytes(),
  key_cap_queue(owner, 'c1'), key_cap_ckpt_queue(owner, 'c1', 'a|b'), key_owner_caps(owner), key_caps_version(),
  key_cap('c1'), key_caps(), key_cap_on('c1'), key_capable(inst)}`)
	got, err := sc.Run(t.Context(), s.rdb, nil, k.prefix, id, owner, inst).StringSlice()
	mustOK(t, err)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Lua keys differ from Go keys (-go +lua):\n%s", d)
	}
}

func TestQueueMemberOrder(t *testing.T) {
	ranks := []int64{-(1 << 62), -(1 << 40), -5, -1, 0, 1, 1 << 40, 1 << 62} // claim order
	members := make([]string, len(ranks))
	for i, r := range ranks {
		members[i] = queueMemberPrefix(r)
	}
	if !slices.IsSorted(members) {
		t.Errorf("queue member prefixes are not in claim order: %v", members)
	}
	if got := queueMemberPrefix(0); len(got) != 16 {
		t.Errorf("prefix %q has %d characters, want 16", got, len(got))
	}
}

func TestOpenErrors(t *testing.T) {
	cases := map[string]struct {
		url  string
		opts []Option
	}{
		"not a redis url": {"http://127.0.0.1:6379", nil},
		"empty prefix":    {"redis://127.0.0.1:6379/0", []Option{WithPrefix("")}},
		"no buffer":       {"redis://127.0.0.1:6379/0", []Option{WithSubscriberBuffer(0)}},
	}
	for name, c := range cases {
		if s, err := Open(t.Context(), c.url, c.opts...); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded, want an error", name)
		}
	}
	_, err := Open(t.Context(), "redis://:hunter2@127.0.0.1:1/0?max_retries=-1")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
	_, badPort := Open(t.Context(), "redis://:hunter2@127.0.0.1:port/0")
	for _, err := range []error{err, badPort} {
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open error %v: want an error that does not show the password", err)
		}
	}
}

// TestUnavailable: a server that cannot be reached, or a closed store,
// answers ErrUnavailable from every kind of call, so the API says 503.
func TestUnavailable(t *testing.T) {
	down := NewFromClient(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1}), "x:")
	t.Cleanup(func() { down.Close(); down.rdb.Close() })
	closed := open(t)
	mustOK(t, closed.Close())
	for name, s := range map[string]*Store{"unreachable": down, "closed": closed} {
		for call, err := range storeCalls(t.Context(), s) {
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s: %s: %v, want ErrUnavailable", name, call, err)
			}
		}
	}
}

// storeCalls makes one call of each kind and returns the errors by name.
func storeCalls(ctx context.Context, s *Store) map[string]error {
	errs := map[string]error{"Ping": s.Ping(ctx)}
	_, errs["TaskInsert"] = s.TaskInsert(ctx, &store.TaskInsertParams{ID: "t", Workflow: []byte(`{}`)})
	_, errs["TaskGet"] = s.TaskGet(ctx, "t")
	_, errs["TaskList"] = s.TaskList(ctx, &store.TaskListParams{})
	_, errs["TaskClaim"] = s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i", LeaseOwner: "r"})
	_, errs["TaskCounts"] = s.TaskCounts(ctx)
	_, errs["InstanceList"] = s.InstanceList(ctx)
	_, errs["FileList"] = s.FileList(ctx, &store.FileListParams{})
	_, errs["ConfigGet"] = s.ConfigGet(ctx)
	_, errs["LeaseAcquire"] = s.LeaseAcquire(ctx, &store.LeaseParams{Name: "l", Holder: "h", TTL: time.Second})
	errs["Publish"] = s.Publish(ctx, event.Event{Type: "x"})
	_, errs["Subscribe"] = s.Subscribe(ctx)
	return errs
}

func TestTranslate(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"redis.Nil", redis.Nil, store.ErrNotFound},
		{"script not found", redisError("NOTFOUND task"), store.ErrNotFound},
		{"script conflict", redisError("CONFLICT task is running"), store.ErrConflict},
		{"loading", redisError("LOADING Redis is loading the dataset in memory"), store.ErrUnavailable},
		{"out of memory", redisError("OOM command not allowed when used memory > 'maxmemory'."), store.ErrUnavailable},
		{"client closed", redis.ErrClosed, store.ErrUnavailable},
		{"pool timeout", fmt.Errorf("get conn: %w", redis.ErrPoolTimeout), store.ErrUnavailable},
		{"dial", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, store.ErrUnavailable},
		{"caller cancelled", context.Canceled, context.Canceled},
		{"caller deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), context.DeadlineExceeded},
	}
	for _, c := range cases {
		got := translate(c.err)
		if (c.want == nil) != (got == nil) || (c.want != nil && !errors.Is(got, c.want)) {
			t.Errorf("%s: translate(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
	for _, err := range []error{
		redisError("WRONGTYPE Operation against a key holding the wrong kind of value"),
		context.DeadlineExceeded,
	} {
		if got := translate(err); errors.Is(got, store.ErrUnavailable) || errors.Is(got, store.ErrConflict) {
			t.Errorf("translate(%v) = %v, want it unchanged", err, got)
		}
	}
}

// redisError is an error reply as go-redis returns it.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

// TestOpenRetries: go-redis retries nothing unless the URL asks for it
// (go-redis keeps "no retries", -1, as 0 once the client is built).
func TestOpenRetries(t *testing.T) {
	u := redistest.URL(t)
	sep := map[bool]string{true: "&", false: "?"}[strings.Contains(u, "?")]
	for query, want := range map[string]int{"": 0, sep + "max_retries=2": 2} {
		s, err := Open(t.Context(), u+query)
		mustOK(t, err)
		if got := s.rdb.(*redis.Client).Options().MaxRetries; got != want {
			t.Errorf("URL %q: MaxRetries = %d, want %d", u+query, got, want)
		}
		s.Close()
	}
}

func TestWebhookKeyBuildersAgree(t *testing.T) {
	s := open(t)
	k := s.keys
	const id, owner = "3f1c0d52-0000-4000-8000-000000000001", "al:ice"
	want := []string{k.whSub(id), k.whSubs(), k.whOwnerSubs(owner), k.whTaskSubs(id), k.whDelivery(id), k.whDue(), k.whTaskDeliveries(id)}
	sc := script(luaWebhookKeys, `local id, owner = ARGV[2], ARGV[3]
return {key_wh_sub(id), key_wh_subs(), key_wh_owner_subs(owner), key_wh_task_subs(id), key_wh_delivery(id), key_wh_due(),
  key_wh_task_deliveries(id)}`)
	got, err := sc.Run(t.Context(), s.rdb, nil, k.prefix, id, owner).StringSlice()
	mustOK(t, err)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Lua webhook keys differ from Go keys (-go +lua):\n%s", d)
	}
}

// TestSpeaksRESP2: the store's connections use RESP2, unless the URL asks
// for another protocol: with RESP3, go-redis looks for push notifications
// before every reply, which the store never uses.
func TestSpeaksRESP2(t *testing.T) {
	s := open(t)
	info, err := s.rdb.ClientInfo(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if info.Resp != 2 {
		t.Errorf("connection speaks RESP%d, want RESP2", info.Resp)
	}
}
