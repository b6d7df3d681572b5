package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	b, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	return doc
}

// extraPaths are served outside the route table (Handler) and documented.
var extraPaths = []string{"GET /ws", "GET /files/{id}/{name}"}

// TestOpenAPICoversRouteTable: the document is valid OpenAPI 3.1, every
// route of the route table (the optional ones included) and every path
// served beside it has an operation there, and the document has no
// operation that nothing serves.
func TestOpenAPICoversRouteTable(t *testing.T) {
	doc := loadOpenAPI(t)
	s := New(Deps{
		Metrics:        http.NotFoundHandler(),
		RefreshCatalog: func(context.Context, string) (string, error) { return "", nil },
	})
	served := slices.Clone(extraPaths)
	for _, rt := range s.Routes() {
		served = append(served, rt.Method+" "+rt.Pattern)
	}
	for _, mp := range served {
		method, path, _ := strings.Cut(mp, " ")
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("%s has no operation in the OpenAPI document (internal/api/openapi/openapi.yaml)", mp)
			continue
		}
		op := item.GetOperation(method)
		if op.Responses.Default() == nil {
			t.Errorf("%s: no default (error envelope) response", mp)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !slices.Contains(served, method+" "+path) {
				t.Errorf("the OpenAPI document has %s %s, which no route serves", method, path)
			}
		}
	}
}

// TestOpenAPIScopes: the document names the scope words the gateway checks.
func TestOpenAPIScopes(t *testing.T) {
	doc := loadOpenAPI(t)
	for _, path := range []string{"/api/tasks", "/api/keys"} {
		if doc.Paths.Value(path) == nil {
			t.Errorf("no %s", path)
		}
	}
	if !strings.Contains(doc.Info.Description, "<resource>:read") {
		t.Error("the document's description does not explain key scopes")
	}
}
