package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/client"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

// receiver is a webhook endpoint of the test: it checks each request's
// Standard Webhooks signature with the secret it is given, and answers 503
// while down.
type receiver struct {
	t    *testing.T
	srv  *httptest.Server
	down atomic.Bool

	mu      sync.Mutex
	secrets []string
	got     map[string][]hookPayload // by webhook-id, the requests answered 2xx
	refused int                      // requests answered 503
}

type hookPayload struct {
	Type string `json:"type"`
	Data struct {
		TaskID string `json:"taskId"`
		Status string `json:"status"`
	} `json:"data"`
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, got: map[string][]hookPayload{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/hook" }

func (r *receiver) addSecret(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, s)
}

// verify checks the signature the way a receiver of the Standard Webhooks
// convention does, independently of the gateway's code.
func (r *receiver) verify(req *http.Request, body []byte) bool {
	id, ts, sigs := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, secret := range r.secrets {
		// The Go client's verification must agree with this one.
		if err := client.VerifyWebhook(secret, req.Header, body); err != nil && len(r.secrets) == 1 {
			r.t.Errorf("client.VerifyWebhook: %v", err)
		}
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(body)
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		for _, s := range strings.Fields(sigs) {
			if hmac.Equal([]byte(s), []byte(want)) {
				return true
			}
		}
	}
	return false
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.down.Load() {
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if !r.verify(req, body) {
		r.t.Errorf("webhook %s: bad signature %q", req.Header.Get("webhook-id"), req.Header.Get("webhook-signature"))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p hookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		r.t.Errorf("webhook body %s: %v", body, err)
	}
	r.mu.Lock()
	r.got[req.Header.Get("webhook-id")] = append(r.got[req.Header.Get("webhook-id")], p)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// events returns the types received for a task, and fails on any event
// received more than once.
func (r *receiver) events(taskID string) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, ps := range r.got {
		if ps[0].Data.TaskID != taskID {
			continue
		}
		if len(ps) != 1 {
			r.t.Errorf("event %s received %d times", id, len(ps))
		}
		out[ps[0].Type] += len(ps)
	}
	return out
}

type delivery struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	URL        string `json:"url"`
	State      string `json:"state"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"lastStatus"`
	Log        []struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	} `json:"log"`
}

func deliveries(e *apptest.Env, token, taskID string) []delivery {
	e.T.Helper()
	r := e.Do("GET", "/api/tasks/"+taskID+"/webhooks", token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET webhooks of %s: %d %s", taskID, r.Status, r.Raw)
	}
	var v struct {
		Items []delivery `json:"items"`
	}
	r.Into(e.T, &v)
	return v.Items
}

func allDelivered(ds []delivery, n int) bool {
	if len(ds) != n {
		return false
	}
	for _, d := range ds {
		if d.State != "delivered" {
			return false
		}
	}
	return true
}

// subscribe registers a webhook for all of the caller's tasks and tells rcv its secret.
func subscribe(e *apptest.Env, token string, rcv *receiver, events []string) string {
	e.T.Helper()
	r := e.Do("POST", "/api/webhooks", token, map[string]any{"url": rcv.url(), "events": events})
	if r.Status != http.StatusOK {
		e.T.Fatalf("POST /api/webhooks: %d %s", r.Status, r.Raw)
	}
	var v struct {
		ID, Secret string
	}
	r.Into(e.T, &v)
	if !strings.HasPrefix(v.Secret, "whsec_") {
		e.T.Fatalf("secret %q", v.Secret)
	}
	rcv.addSecret(v.Secret)
	return v.ID
}

// hookStores runs a test on SQLite and on Redis; configure gets the store
// settings to apply.
func hookStores(t *testing.T, fn func(t *testing.T, useStore func(*config.Config))) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, func(*config.Config) {})
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		url := redistest.URL(t)
		prefix := redistest.Prefix(t, url)
		fn(t, func(c *config.Config) { c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", url, prefix })
	})
}

// fastHooks lets webhooks reach the test's loopback receivers and retries quickly.
func fastHooks(c *config.Config) {
	c.Webhooks.AllowPrivate = true
	c.Webhooks.MinBackoff = config.Millis(20 * time.Millisecond)
	c.Webhooks.MaxBackoff = config.Millis(200 * time.Millisecond)
}

// TestWebhooksDeliverEachEventOnce: a subscription for every event and a
// task's own webhook for its end each receive their events once, signed,
// and the task's delivery log shows them delivered with the receivers'
// status.
func TestWebhooksDeliverEachEventOnce(t *testing.T) {
	t.Parallel()
	hookStores(t, func(t *testing.T, useStore func(*config.Config)) {
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) { useStore(c); fastHooks(c) }})
		alice := e.Login(apptest.User, apptest.UserPass)
		all, own := newReceiver(t), newReceiver(t)
		subscribe(e, alice, all, []string{"task.pending", "task.running", "task.completed", "task.failed"})

		// The task's webhook has the receiver's own secret: its delivery
		// may come before the answer that would show a generated one.
		secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("the task's own secret, 32 bytes!"))
		own.addSecret(secret)
		r := e.Do("POST", "/api/tasks", alice, map[string]any{"workflow": basic("hooks"),
			"webhook": map[string]any{"url": own.url(), "secret": secret}})
		if r.Status != http.StatusOK {
			t.Fatalf("POST /api/tasks with a webhook: %d %s", r.Status, r.Raw)
		}
		var created struct {
			ID      string `json:"id"`
			Webhook struct {
				ID, Secret string
				Events     []string
			} `json:"webhook"`
		}
		r.Into(t, &created)
		if created.Webhook.Secret != secret || len(created.Webhook.Events) != 3 {
			t.Fatalf("the task's webhook = %+v, want its secret and the three end events", created.Webhook)
		}
		if again := getTask(e, alice, created.ID); strings.Contains(string(e.Do("GET", "/api/tasks/"+created.ID, alice, nil).Raw), created.Webhook.Secret) {
			t.Fatalf("GET shows the webhook's secret: %+v", again)
		}
		waitStatus(e, alice, created.ID, "completed", 30*time.Second)
		var ds []delivery
		e.Eventually(20*time.Second, "4 deliveries delivered", func() bool {
			ds = deliveries(e, alice, created.ID)
			return allDelivered(ds, 4)
		})
		for _, d := range ds {
			if d.LastStatus != http.StatusNoContent || d.Attempts != 1 || len(d.Log) != 1 {
				t.Errorf("delivery %+v: want one attempt answered 204", d)
			}
		}
		got := all.events(created.ID)
		want := map[string]int{"task.pending": 1, "task.running": 1, "task.completed": 1}
		if len(got) != len(want) || got["task.pending"] != 1 || got["task.running"] != 1 || got["task.completed"] != 1 {
			t.Errorf("subscription for all events received %v, want %v", got, want)
		}
		if got := own.events(created.ID); len(got) != 1 || got["task.completed"] != 1 {
			t.Errorf("the task's own webhook received %v, want task.completed once", got)
		}
		// Bob cannot read Alice's log.
		bob := e.Login(apptest.User2, apptest.User2Pass)
		if r := e.Do("GET", "/api/tasks/"+created.ID+"/webhooks", bob, nil); r.Status != http.StatusNotFound {
			t.Errorf("bob reads alice's deliveries: %d", r.Status)
		}
	})
}

// TestWebhookRetriedAcrossRestart: a receiver that answers 503 gets the
// event again with backoff; the gateway restarts in between; once the
// receiver is back it gets the event, once, and the log shows the 503s
// and the 204.
func TestWebhookRetriedAcrossRestart(t *testing.T) {
	t.Parallel()
	hookStores(t, func(t *testing.T, useStore func(*config.Config)) {
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) { useStore(c); fastHooks(c) }})
		alice := e.Login(apptest.User, apptest.UserPass)
		rcv := newReceiver(t)
		rcv.down.Store(true)
		subscribe(e, alice, rcv, nil) // the end events
		task := submit(e, alice, map[string]any{"workflow": basic("hooks-down")})
		waitStatus(e, alice, task.ID, "completed", 30*time.Second)
		e.Eventually(20*time.Second, "two refused attempts", func() bool {
			ds := deliveries(e, alice, task.ID)
			return len(ds) == 1 && ds[0].Attempts >= 2
		})
		e.Restart()
		alice = e.Login(apptest.User, apptest.UserPass)
		rcv.down.Store(false)
		var ds []delivery
		e.Eventually(20*time.Second, "the delivery after the receiver's recovery", func() bool {
			ds = deliveries(e, alice, task.ID)
			return allDelivered(ds, 1)
		})
		if got := rcv.events(task.ID); got["task.completed"] != 1 || len(got) != 1 {
			t.Fatalf("received %v, want task.completed once", got)
		}
		d := ds[0]
		if d.Attempts < 3 || d.LastStatus != http.StatusNoContent || d.Log[0].Status != http.StatusServiceUnavailable {
			t.Fatalf("log %+v: want 503s then 204", d)
		}
	})
}

// TestWebhookOncePerEventOnTwoReplicas: two replicas on one Redis, each
// delivering; every event of every task arrives once.
func TestWebhookOncePerEventOnTwoReplicas(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	prefix := redistest.Prefix(t, url)
	configure := func(c *config.Config) {
		c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", url, prefix
		fastHooks(c)
	}
	a := apptest.Start(t, apptest.Options{Instances: 2, Configure: configure})
	b := apptest.Start(t, apptest.Options{Sims: a.Sims, Configure: configure})
	alice := a.Login(apptest.User, apptest.UserPass)
	rcv := newReceiver(t)
	subscribe(a, alice, rcv, []string{"task.pending", "task.running", "task.completed"})
	_ = b
	const n = 12
	ids := make([]string, n)
	for i := range ids {
		ids[i] = submit(a, alice, map[string]any{"workflow": basic("hooks-two")}).ID
	}
	for _, id := range ids {
		waitStatus(a, alice, id, "completed", 30*time.Second)
		a.Eventually(20*time.Second, "3 deliveries of "+id, func() bool { return allDelivered(deliveries(a, alice, id), 3) })
	}
	for _, id := range ids {
		if got := rcv.events(id); len(got) != 3 || got["task.pending"] != 1 || got["task.running"] != 1 || got["task.completed"] != 1 {
			t.Errorf("task %s: received %v, want pending, running and completed once each", id, got)
		}
	}
}

// TestWebhookPrivateAddressRefused: without the operator's allowance a
// webhook URL on a private, loopback or link-local address is refused, as
// a subscription and as a task's webhook.
func TestWebhookPrivateAddressRefused(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	alice := e.Login(apptest.User, apptest.UserPass)
	rcv := newReceiver(t)
	for _, u := range []string{rcv.url(), "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]:80/x", "http://localhost:9/x"} {
		r := e.Do("POST", "/api/webhooks", alice, map[string]any{"url": u})
		if r.Status != http.StatusBadRequest || r.Body.Error != "webhook_url_refused" {
			t.Errorf("subscribe %s: %d %s, want 400 webhook_url_refused", u, r.Status, r.Raw)
		}
	}
	r := e.Do("POST", "/api/tasks", alice, map[string]any{"workflow": basic("hooks-private"), "webhook": map[string]any{"url": rcv.url()}})
	if r.Status != http.StatusBadRequest || r.Body.Error != "webhook_url_refused" {
		t.Errorf("task webhook on loopback: %d %s, want 400 webhook_url_refused", r.Status, r.Raw)
	}
	if r := e.Do("POST", "/api/webhooks", alice, map[string]any{"url": "ftp://example.com/x"}); r.Status != http.StatusBadRequest {
		t.Errorf("ftp URL: %d", r.Status)
	}
	if r := e.Do("POST", "/api/webhooks", alice, map[string]any{"url": "https://example.com/x", "events": []string{"task.exploded"}}); r.Status != http.StatusBadRequest {
		t.Errorf("unknown event: %d", r.Status)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.got) != 0 || rcv.refused != 0 {
		t.Errorf("the loopback receiver was called")
	}
}
