package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// TestAPIKeysPage: a key created on the page is shown once, works against
// the API, is listed with its last use, and is refused once revoked there.
func TestAPIKeysPage(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	p := newPage(t, d)
	p.open("#/keys")
	p.login("admin", "admin123")
	p.waitJS("the keys page", `!!document.querySelector('#key-form')`, short)
	eval[any](p, `(() => {
	  document.querySelector('#key-name').value = 'from the page';
	  const s = document.querySelector('#key-role'); s.value = 'narrow'; s.dispatchEvent(new Event('change'));
	  document.querySelector('[data-scope="tasks:read"]').checked = true;
	})()`)
	p.click("#key-create")
	p.waitJS("the new key", `/^cfk_/.test(document.querySelector('#new-key')?.textContent || '')`, short)
	key := eval[string](p, `document.querySelector('#new-key').textContent`)
	p.waitJS("the key's row", `document.querySelector('#keys tbody').textContent.includes('from the page')`, short)
	p.shot("created")

	if code := d.statusWith("GET", "/api/tasks", key); code != 200 {
		t.Errorf("GET /api/tasks with the page's key: %d, want 200", code)
	}
	if code := d.statusWith("GET", "/api/files", key); code != 403 {
		t.Errorf("GET /api/files with a tasks:read key: %d, want 403", code)
	}
	p.goRoute("#/files")
	p.goRoute("#/keys")
	p.waitJS("the last use", `[...document.querySelectorAll('#keys tbody tr')].some(r => r.textContent.includes('from the page') && !r.children[6].textContent.includes('never'))`, short)
	id := strings.Split(key, "_")[1]
	p.click(`#keys tr[data-key-id="` + id + `"] [data-action="revoke"]`)
	p.confirm()
	p.waitJS("the revoked status", `document.querySelector('#keys tr[data-key-id="`+id+`"] [data-status]')?.dataset.status === 'revoked'`, short)
	if code := d.statusWith("GET", "/api/tasks", key); code != 401 {
		t.Errorf("GET /api/tasks with the revoked key: %d, want 401", code)
	}
	p.shot("revoked")
}

// TestAPIReferencePage: the dashboard renders the gateway's own OpenAPI
// document, every operation of it, with nothing loaded from elsewhere.
func TestAPIReferencePage(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	p := newPage(t, d)
	p.open("#/api")
	p.login("admin", "admin123")
	p.waitJS("the operations", `document.querySelectorAll('#apidoc details.op').length > 20`, short)
	for _, op := range []string{"POST /api/tasks", "DELETE /api/keys/{id}", "GET /ws", "GET /api/openapi.json"} {
		if !eval[bool](p, `!!document.querySelector('details.op[data-op="`+op+`"]')`) {
			t.Errorf("no %s on the API reference page", op)
		}
	}
	if !eval[bool](p, `!!document.querySelector('#schema-Task') && !!document.querySelector('[data-nav="apidoc"]')`) {
		t.Error("no Task schema, or no API reference link in the menu")
	}
	if n := eval[int](p, `performance.getEntriesByType('resource').filter(e => !e.name.startsWith(location.origin)).length`); n != 0 {
		t.Errorf("%d resources loaded from other origins", n)
	}
	p.shot("reference")
}

// statusWith is the HTTP status of a request made with token.
func (d *demo) statusWith(method, path, token string) int {
	d.t.Helper()
	req, err := http.NewRequest(method, d.URL+path, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	res.Body.Close()
	return res.StatusCode
}
