package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"go.yaml.in/yaml/v3"
)

// openapiYAML is the OpenAPI 3.1 document of the whole API, written by hand
// next to the route table: a test fails when a route has no operation in
// it, or when an end-to-end test gets an answer that does not match it.
//
//go:embed openapi/openapi.yaml
var openapiYAML []byte

// openapiJSON is the document as JSON, converted once.
var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi: parse the document: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encode the document: %w", err)
	}
	return b, nil
})

// OpenAPI returns the API's OpenAPI 3.1 document as JSON.
func OpenAPI() ([]byte, error) { return openapiJSON() }

// openapiDoc is GET /api/openapi.json: the document itself, not in the
// envelope, without a token (it holds no secret).
func (s *Server) openapiDoc(w http.ResponseWriter, r *http.Request) error {
	b, err := OpenAPI()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, err = w.Write(b)
	return err
}
