// Package redisstore is the store.Store shared by several gateway replicas:
// every record, index, lease and event lives in one Redis server (6.2 or
// later; tested with 7.0), under a key prefix ("comfyfleet:" by default).
//
// # Atomicity
//
// Every change that touches more than one key is one Lua script (run with
// EVALSHA, falling back to EVAL), so a replica that dies mid-call leaves
// nothing half done and two replicas never interleave inside a change. Each
// script validates before it writes (Redis does not roll a script back) and
// documents its KEYS, ARGV and return value. Scripts answer "NOTFOUND ..." or
// "CONFLICT ..." error replies, which translate turns into store.ErrNotFound
// and store.ErrConflict; connection failures become store.ErrUnavailable.
//
// # Data model
//
// Key names are built in keys.go only (Go and Lua builders side by side).
// With the prefix P:
//
//	P task:<id>             hash: one task (fields listed in task.go; bodies and
//	                        result as JSON text; times as Unix ms, 0 = not yet)
//	P seq                   counter handing out Seq (INCR)
//	P queue                 ZSET of pending tasks, all scores 0, members
//	                        <rank hex16><seq hex16><id> (store.Rank in offset
//	                        binary): rank order is byte order, so the queue
//	                        position is ZRANK + 1, O(log n), exact for every
//	                        int64 rank and Seq
//	P queue:owner:<owner>   the same members, one owner's pending tasks
//	P queue:cap:<len(owner)>:<owner><cap>
//	                        the same, one owner's tasks of one placement
//	                        requirement (CapKey, "" for none)
//	P queue:capckpt:<len(owner)>:<owner><len(cap)>:<cap><key>
//	                        the same, those of them needing one
//	                        CheckpointKey (warm placement)
//	P queue:caps:<owner>    SET of the requirements of an owner's pending tasks
//	P queue:capsv           set once the queues have the per-requirement
//	                        form (the first claim moves older stores' tasks)
//	P queue:owners          ZSET of owners with pending tasks, score running
//	                        count × 2^33 + serial of their last claim: the
//	                        claim serves the first with a requirement the
//	                        instance can run (fair share), then the lowest
//	                        head over those requirements' queues, or over
//	                        their checkpoint queues
//	P cap:<key>             hash: one placement requirement (data, created)
//	P caps                  SET of every requirement key
//	P capon:<key>           SET of the instance ids able to run a requirement
//	P capable:<instance>    SET of the requirement keys an instance can run
//	P catalog:<hash>        hash: one node catalogue (data, created)
//	P running:owners        hash: running count per owner
//	P queue:served          hash: last claim serial per owner
//	P queue:serial          counter handing out claim serials
//	P list:all              ZSET of every task, score CreatedAt (ms), member
//	                        <seq hex16><id>: ZREVRANGE pages newest first,
//	                        ties by Seq
//	P list:<status>         the same per status; ZCARD gives TaskCounts in O(1)
//	P owner:all:<owner>     the same per owner (tasks with an owner only)
//	P owner:<status>:<owner>
//	P running:leases        ZSET of running task ids by lease expiry (ms)
//	P running:on:<instance> SET of the task ids running on an instance
//	P instance:<id>         hash: one instance's state
//	P instances             SET of instance ids
//	P file:<id>             hash: one file record
//	P files:all             ZSET of file ids, score CreatedAt (ms), ties by id
//	P files:owner:<owner>   the same per owner
//	P files:task:<task id>  the same per task
//	P config                string: the runtime config document
//	P retention:tasks       ZSET of finished, unpinned task ids by FinishedAt
//	                        (ms): the pruner reads the oldest end
//	P retention:files       ZSET of unpinned file ids by CreatedAt (ms), the
//	                        outputs of pinned tasks left out
//	P retention:v           set once the two hold the records stored before
//	                        they existed (the first prune fills them, once,
//	                        in bounded steps)
//	P retention:backfill    where that backfill is until it completes
//	P lease:<name>          hash: holder and expiry (ms) of a named lease
//	P events                the pub/sub channel
//
// A list page with one status (or none) is one ZREVRANGE: O(log n + limit).
// With several statuses the script reads the first offset+limit entries of
// each status list and merges them; from offset 1000 on it first finds the
// page's CreatedAt by binary search (ZCOUNT), so a deep page costs no more
// than a shallow one. The total is the sum of the lists' ZCARDs. Leases are compared against the caller's Now inside the scripts,
// never against Redis's clock; a named lease key also gets a PEXPIRE an hour
// past its TTL, only to collect leases nobody releases.
//
// Scripts build the keys of records they discover (a popped task, a file's
// owner list) from the prefix, so with Redis Cluster every key must live in
// one slot: use a prefix with a hash tag, such as "{comfyfleet}:".
//
// # Events
//
// Publish is a Redis PUBLISH on P events; every replica's subscribers get
// it. Each Subscribe holds its own connection (go-redis reconnects and
// resubscribes it after a network failure; events published meanwhile are
// lost) and returns once Redis confirmed the subscription. A bounded buffer
// (default 1024) sits between the connection and the subscriber; when it is
// full the event is dropped for that subscriber and counted
// (Store.DroppedEvents), so a slow subscriber never stalls the connection
// and Redis never disconnects it for a full output buffer.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

var _ store.Store = (*Store)(nil)

// DefaultPrefix is the key prefix of Open without WithPrefix.
const DefaultPrefix = "comfyfleet:"

// defaultSubscriberBuffer is how many events a subscriber may fall behind
// before events are dropped for it.
const defaultSubscriberBuffer = 1024

// Store is the Redis implementation of store.Store. It is safe for
// concurrent use.
type Store struct {
	rdb        redis.UniversalClient
	keys       keys
	ownsClient bool // Close closes rdb
	buffer     int  // per-subscription event buffer
	logSize    int  // events the event log keeps, about (XADD MAXLEN ~)
	deepOffset int  // see defaultDeepOffset; tests lower it
	dropped    atomic.Uint64
	// backfillStep is the members one step of the retention backfill reads
	// (backfillStep by default; tests lower it); backfilled is set once this
	// store saw the backfill complete.
	backfillStep int
	backfilled   atomic.Bool

	mu sync.Mutex // guards subs and closed
	// subs are the live subscriptions, closed by Close.
	subs map[*subscription]struct{}
	// closed is set by Close; later Ping, Publish and Subscribe fail.
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// Option changes how Open sets up the store.
type Option func(*options)

type options struct {
	prefix           string
	subscriberBuffer int
	eventLogSize     int
}

// WithEventLogSize sets how many logged events the store keeps at least
// (Redis trims a stream a little beyond its bound). Default
// store.EventLogSize.
func WithEventLogSize(n int) Option { return func(o *options) { o.eventLogSize = n } }

// WithPrefix sets the prefix of every key and of the event channel, so
// several deployments can share one Redis. Default DefaultPrefix.
func WithPrefix(prefix string) Option { return func(o *options) { o.prefix = prefix } }

// WithSubscriberBuffer sets how many events a subscriber may fall behind
// before events are dropped for it. Default 1024 (defaultSubscriberBuffer).
func WithSubscriberBuffer(n int) Option { return func(o *options) { o.subscriberBuffer = n } }

func (o *options) validate() error {
	switch {
	case o.prefix == "":
		return errors.New("key prefix must not be empty")
	case o.subscriberBuffer < 1:
		return fmt.Errorf("subscriber buffer %d: want at least 1", o.subscriberBuffer)
	case o.eventLogSize < 1:
		return fmt.Errorf("event log size %d: want at least 1", o.eventLogSize)
	}
	return nil
}

// Open connects to the Redis server of a redis:// or rediss:// (TLS) URL,
// such as redis://:password@host:6379/0 (user, password and database number
// come from the URL; go-redis query options such as dial_timeout work too),
// and checks that it answers: an unreachable server is store.ErrUnavailable.
//
// Unless the URL sets max_retries, go-redis does not retry failed commands:
// a script whose reply was lost may have run, and running it again would
// claim a second task or report a conflict for an insert that succeeded. A
// failed call is store.ErrUnavailable and the caller decides.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	o := options{prefix: DefaultPrefix, subscriberBuffer: defaultSubscriberBuffer, eventLogSize: store.EventLogSize}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("redisstore: open: %w", err)
	}
	ro, err := redis.ParseURL(rawURL)
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		err = uerr.Err // url.Error repeats the URL, password included
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: open %s: %w", redactURL(rawURL), err)
	}
	if u, err := url.Parse(rawURL); err == nil {
		if !u.Query().Has("max_retries") {
			ro.MaxRetries = -1
		}
		if !u.Query().Has("protocol") {
			// RESP2: the store uses nothing of RESP3, whose push
			// notifications go-redis looks for before every reply.
			ro.Protocol = 2
		}
	}
	s := newStore(redis.NewClient(ro), &o, true)
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("redisstore: open %s: %w", redactURL(rawURL), err)
	}
	return s, nil
}

// NewFromClient builds a store on a client the caller owns: Close ends the
// store's subscriptions but leaves rdb open. An empty prefix means
// DefaultPrefix. It does not contact the server.
func NewFromClient(rdb redis.UniversalClient, prefix string) *Store {
	o := options{prefix: prefix, subscriberBuffer: defaultSubscriberBuffer, eventLogSize: store.EventLogSize}
	if o.prefix == "" {
		o.prefix = DefaultPrefix
	}
	return newStore(rdb, &o, false)
}

func newStore(rdb redis.UniversalClient, o *options, owns bool) *Store {
	return &Store{
		rdb: rdb, keys: keys{prefix: o.prefix}, ownsClient: owns, buffer: o.subscriberBuffer, logSize: o.eventLogSize, deepOffset: defaultDeepOffset,
		backfillStep: backfillStep,
		subs:         make(map[*subscription]struct{}),
	}
}

// redactURL hides the password of a Redis URL for error messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Driver returns "redis".
func (s *Store) Driver() string { return "redis" }

// Prefix returns the key prefix of the store.
func (s *Store) Prefix() string { return s.keys.prefix }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.checkOpen("ping"); err != nil {
		return err
	}
	return wrap(s.rdb.Ping(ctx).Err(), "ping")
}

// checkOpen fails once the store is closed.
func (s *Store) checkOpen(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("redisstore: %s: %w: store closed", op, store.ErrUnavailable)
	}
	return nil
}

// Close ends every subscription and, unless the client came from
// NewFromClient, closes the connection pool. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		subs := make([]*subscription, 0, len(s.subs))
		for sub := range s.subs {
			subs = append(subs, sub)
		}
		s.mu.Unlock()
		for _, sub := range subs {
			sub.Close()
		}
		if s.ownsClient {
			s.closeErr = s.rdb.Close()
		}
	})
	return s.closeErr
}

// Error replies of the scripts. A script answers redis.error_reply with one
// of these codes, a space and a reason.
const (
	codeNotFound = "NOTFOUND"
	codeConflict = "CONFLICT"
	codeLimit    = "LIMIT"
	// reasonNoneRunnable after NOTFOUND is store.ErrNoneRunnable.
	reasonNoneRunnable = "NONE_RUNNABLE"
)

// unavailableCodes are Redis error codes that mean the server cannot serve
// now (loading, failing over, out of memory, busy with a script), not that
// the request is wrong.
var unavailableCodes = []string{
	"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
	"OOM", "BUSY", "ERR max number of clients",
}

// translate turns Redis and go-redis errors into the store's sentinels; it
// is the only place that knows them. The original error stays wrapped.
func translate(err error) error {
	var rerr redis.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return store.ErrNotFound
	case errors.As(err, &rerr):
		return translateReply(rerr)
	case unreachable(err):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// unreachable reports whether err says the server could not be reached or
// the connection broke. The caller's own cancellation or deadline is not
// the server's fault, unless it cut a dial short.
func unreachable(err error) bool {
	var opErr *net.OpError
	var netErr net.Error
	switch {
	case errors.As(err, &opErr):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrPoolExhausted) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &netErr)
}

// translateReply maps an error reply from Redis or from a script.
func translateReply(rerr redis.Error) error {
	msg := rerr.Error()
	code, reason, _ := strings.Cut(msg, " ")
	switch code {
	case codeNotFound:
		if strings.HasPrefix(reason, reasonNoneRunnable) {
			return store.ErrNoneRunnable
		}
		return fmt.Errorf("%w: %s", store.ErrNotFound, reason)
	case codeConflict:
		return fmt.Errorf("%w: %s", store.ErrConflict, reason)
	case codeLimit:
		return fmt.Errorf("%w: %s", store.ErrLimit, reason)
	}
	for _, c := range unavailableCodes {
		if strings.HasPrefix(msg, c) {
			return fmt.Errorf("%w: %w", store.ErrUnavailable, rerr)
		}
	}
	return rerr
}

// wrap names the operation and translates err; nil stays nil.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("redisstore: %s: %w", fmt.Sprintf(format, args...), translate(err))
}

// ms converts a time to stored Unix milliseconds; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// msArg is ms as a script argument.
func msArg(t time.Time) string { return strconv.FormatInt(ms(t), 10) }

// fromMS converts stored Unix milliseconds back to a UTC time; 0 is the zero time.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
