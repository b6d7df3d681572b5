package apptest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what checkOpenAPI reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recorder) Fatal(a ...any)            { r.errs = append(r.errs, fmt.Sprint(a...)) }

// TestCheckOpenAPI: the end-to-end tests' check refuses an answer that does
// not match the document and passes one that does.
func TestCheckOpenAPI(t *testing.T) {
	task := `{"id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","owner":"alice","status":"pending","progress":0,"priority":0,` +
		`"instanceId":"","attempts":0,"createdAt":"2024-01-01T00:00:00.000Z","updatedAt":"2024-01-01T00:00:00.000Z",` +
		`"startedAt":null,"finishedAt":null,"result":null,"error":null}`
	for _, tt := range []struct {
		name   string
		method string
		path   string
		status int
		body   string
		ok     bool
	}{
		{"a task", "GET", "/api/tasks/x", 200, `{"code":200,"data":` + task + `}`, true},
		{"an error envelope", "GET", "/api/tasks/x", 404, `{"code":404,"error":"task_not_found","message":"No such task."}`, true},
		{"a task without its status", "GET", "/api/tasks/x", 200, `{"code":200,"data":` + strings.Replace(task, `"status":"pending",`, "", 1) + `}`, false},
		{"an unknown status", "GET", "/api/tasks/x", 200, `{"code":200,"data":` + strings.Replace(task, "pending", "paused", 1) + `}`, false},
		{"an error without a message", "DELETE", "/api/keys/x", 404, `{"code":404,"error":"key_not_found"}`, false},
		{"a 202 outside a wait", "GET", "/api/tasks", 202, `{"code":202,"data":{}}`, false},
	} {
		rec := &recorder{TB: t}
		e := &Env{T: rec}
		req, _ := http.NewRequest(tt.method, "http://127.0.0.1:1"+tt.path, nil)
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}}
		e.checkOpenAPI(req, resp, []byte(tt.body))
		if got := len(rec.errs) == 0; got != tt.ok {
			t.Errorf("%s: passed %v, want %v (%v)", tt.name, got, tt.ok, rec.errs)
		}
	}
}
