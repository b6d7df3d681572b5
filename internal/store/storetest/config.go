package storetest

import (
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

func configCases() []testCase {
	return []testCase{
		{"GetEmpty", testConfigGetEmpty},
		{"PutGet", testConfigPutGet},
	}
}

func testConfigGetEmpty(t *testing.T, s store.Store) {
	_, err := s.ConfigGet(t.Context())
	wantErr(t, "ConfigGet on empty store", err, store.ErrNotFound)
}

func testConfigPutGet(t *testing.T, s store.Store) {
	docs := [][]byte{
		[]byte(`{"healthCheck": {"interval": 15000},` + "\n" + `"servers": [{"id":"server-1","name":"主服务器","ip":"127.0.0.1","ports":[8001,8002]}]}`),
		[]byte(`{"healthCheck":{"interval":30000}}`),
	}
	for i, doc := range docs {
		must(t, "ConfigPut", s.ConfigPut(t.Context(), doc))
		got, err := s.ConfigGet(t.Context())
		must(t, "ConfigGet", err)
		if string(got) != string(doc) {
			t.Fatalf("ConfigGet after put %d = %q, want %q", i, got, doc)
		}
	}
}
