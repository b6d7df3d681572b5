package apptest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/comfyfleet/comfyfleet/internal/api"
)

// openapiRouter finds the operation of a request in the API's OpenAPI
// document, loaded once for every Env.
var openapiRouter = sync.OnceValues(func() (routers.Router, error) {
	b, err := api.OpenAPI()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	return gorillamux.NewRouter(doc)
})

// checkOpenAPI fails the test when an answer of the API does not match the
// OpenAPI document: its status must be documented for the operation (or
// fall under its default, the error envelope), and its body must match the
// schema of that status and content type. Requests to paths the document
// does not have (the dashboard, unknown routes) are not checked.
func (e *Env) checkOpenAPI(req *http.Request, resp *http.Response, body []byte) {
	e.T.Helper()
	router, err := openapiRouter()
	if err != nil {
		e.T.Fatal(err)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return // not a documented path or method: the 404/405 envelope is checked by its own tests
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		e.T.Errorf("%s %s answered %d, which does not match the OpenAPI document: %v\nbody: %.500s",
			req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
}
