package app_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

// BenchmarkEndToEnd runs zero-duration tasks through the whole gateway (REST
// submit by 8 concurrent clients, dispatch, ComfyUI protocol, output
// collection) on 16 simulated instances, on each store. b.N tasks per run;
// it reports tasks/s.
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("store=sqlite", func(b *testing.B) { benchEndToEnd(b, nil) })
	b.Run("store=redis", func(b *testing.B) {
		url := redistest.URL(b)
		prefix := redistest.Prefix(b, url)
		benchEndToEnd(b, func(c *config.Config) { c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", url, prefix })
	})
}

func benchEndToEnd(b *testing.B, configure func(*config.Config)) {
	e := apptest.Start(b, apptest.Options{Instances: 16, Configure: func(c *config.Config) {
		c.HealthCheck.Interval = config.Millis(5 * time.Second)
		c.HealthCheck.Timeout = config.Millis(5 * time.Second)
		if configure != nil {
			configure(c)
		}
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	e.Eventually(10*time.Second, "every instance alive", func() bool { return allAlive(e, admin, 16) })
	wf := map[string]any{"workflow": basic("bench/run")}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < b.N; i += 8 {
				if r := e.Do("POST", "/api/tasks", admin, wf); r.Status != 200 {
					b.Errorf("submit: %d %s", r.Status, r.Raw)
					return
				}
			}
		})
	}
	wg.Wait()
	e.Eventually(10*time.Minute, fmt.Sprintf("%d tasks completed", b.N), func() bool {
		var o struct{ CompletedTasks int }
		e.Do("GET", "/api/monitor/overview", admin, nil).Into(b, &o)
		return o.CompletedTasks == b.N
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}
