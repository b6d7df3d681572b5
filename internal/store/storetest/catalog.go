package storetest

import (
	"bytes"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func catalogCases() []testCase {
	return []testCase{
		{"PutGet", testCatalogPutGet},
		{"PutOncePerHash", testCatalogPutOncePerHash},
		{"GetMissing", testCatalogGetMissing},
	}
}

// sampleCatalog is a small encoded catalogue and its hash.
func sampleCatalog(ckpt string) (string, []byte) {
	c := &catalog.Catalog{Classes: map[string]*catalog.Class{
		"CheckpointLoaderSimple": {Inputs: []catalog.Input{{Name: "ckpt_name", Required: true, Type: catalog.TypeCombo, Options: []any{ckpt}}}},
		"SaveImage":              {OutputNode: true},
	}}
	return c.Hash(), c.Encode()
}

func testCatalogPutGet(t *testing.T, s store.Store) {
	hash, data := sampleCatalog("sdxl.safetensors")
	created, err := s.CatalogPut(t.Context(), &store.CatalogPutParams{Hash: hash, Data: data, Now: at(1).Add(5e5)})
	must(t, "CatalogPut", err)
	if !created {
		t.Errorf("CatalogPut of a new hash: created = false, want true")
	}
	got, err := s.CatalogGet(t.Context(), hash)
	must(t, "CatalogGet", err)
	diff(t, "CatalogGet", &catalog.Record{Hash: hash, Data: data, CreatedAt: at(1)}, got)
	checkUTC(t, "CatalogGet", got.CreatedAt)
	if _, err := got.Catalog(); err != nil {
		t.Errorf("stored catalogue does not decode: %v", err)
	}
}

// testCatalogPutOncePerHash pins that a catalogue is stored once per hash:
// putting it again (another instance, a refresh) changes nothing.
func testCatalogPutOncePerHash(t *testing.T, s store.Store) {
	hash, data := sampleCatalog("sdxl.safetensors")
	_, err := s.CatalogPut(t.Context(), &store.CatalogPutParams{Hash: hash, Data: data, Now: at(1)})
	must(t, "CatalogPut", err)
	created, err := s.CatalogPut(t.Context(), &store.CatalogPutParams{Hash: hash, Data: []byte(`{"classes":{}}`), Now: at(2)})
	must(t, "CatalogPut again", err)
	if created {
		t.Errorf("CatalogPut of a stored hash: created = true, want false")
	}
	got, err := s.CatalogGet(t.Context(), hash)
	must(t, "CatalogGet", err)
	if !bytes.Equal(got.Data, data) || !got.CreatedAt.Equal(at(1)) {
		t.Errorf("CatalogGet after a second put = %q at %v; want the first put's data at %v", got.Data, got.CreatedAt, at(1))
	}

	other, otherData := sampleCatalog("sd15.safetensors")
	created, err = s.CatalogPut(t.Context(), &store.CatalogPutParams{Hash: other, Data: otherData, Now: at(3)})
	must(t, "CatalogPut other", err)
	if !created {
		t.Errorf("CatalogPut of another hash: created = false, want true")
	}
	got, err = s.CatalogGet(t.Context(), other)
	must(t, "CatalogGet other", err)
	if !bytes.Equal(got.Data, otherData) {
		t.Errorf("CatalogGet other = %q, want %q", got.Data, otherData)
	}
}

func testCatalogGetMissing(t *testing.T, s store.Store) {
	_, err := s.CatalogGet(t.Context(), "0000")
	wantErr(t, "CatalogGet missing", err, store.ErrNotFound)
}
