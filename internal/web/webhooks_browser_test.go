package web_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// TestTaskPageShowsWebhookDeliveries: the task page lists the task's
// webhook deliveries with the receiver's response codes.
func TestTaskPageShowsWebhookDeliveries(t *testing.T) {
	var calls atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first attempt fails
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer rcv.Close()
	d := startDemoWith(t, 1, comfysim.Options{}, func(c *config.Config) {
		c.Webhooks.AllowPrivate = true
		c.Webhooks.MinBackoff = config.Millis(50e6)
	})
	var tv taskView
	d.mustCall("POST", "/api/tasks", map[string]any{"workflow": t2i(2), "webhook": map[string]any{"url": rcv.URL + "/hook"}}, &tv)
	p := newPage(t, d)
	p.open("#/login")
	p.login("admin", "admin123")
	p.goRoute("#/tasks/" + tv.ID)
	// The page reloads the task on its events; the log follows. Reload until delivered.
	p.waitJS("the delivered webhook", `(() => {
		const row = document.querySelector('#task-webhooks tr[data-delivery]');
		if (!row || row.querySelector('.delivery-state').textContent !== 'delivered') {
			if (!window.__reloadAt || Date.now() - window.__reloadAt > 500) { window.__reloadAt = Date.now(); window.dispatchEvent(new HashChangeEvent('hashchange')); }
			return false;
		}
		return true;
	})()`, long)
	if got := p.text(`#task-webhooks tr[data-delivery]`); !strings.Contains(got, "task.completed") || !strings.Contains(got, "503, 202") {
		t.Errorf("delivery row = %q, want task.completed with codes 503, 202", got)
	}
	p.shot("task-webhooks")
}
