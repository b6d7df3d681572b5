package api

import (
	"errors"
	"io"
	"net/http"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

// getConfig is GET /api/config: the live config, secrets redacted.
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, s.deps.Config.Current().Public())
}

// putConfig is PUT /api/config: merge, validate, apply live, persist. Its
// body limit is fixed, so {"reset":true} always gets through.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, configBodyLimit))
	if err != nil {
		return bodyError(err)
	}
	var probe map[string]any
	if err := decodeBytes(body, &probe); err != nil {
		return err
	}
	cfg, err := s.deps.Config.Update(r.Context(), body)
	if fields := fieldErrors(err); len(fields) > 0 {
		all := make([]map[string]string, 0, len(fields))
		for _, fe := range fields {
			all = append(all, map[string]string{"field": fe.Field, "message": fe.Message})
		}
		return &Error{Status: http.StatusBadRequest, Code: "invalid_config", Message: fields[0].Error(),
			Data: map[string]any{"field": fields[0].Field, "fields": all}}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, cfg.Public())
}

// fieldErrors lists every *config.FieldError in err (Validate joins them).
func fieldErrors(err error) []*config.FieldError {
	var out []*config.FieldError
	var walk func(error)
	walk = func(e error) {
		var fe *config.FieldError
		switch {
		case e == nil:
		case errors.As(e, &fe) && e == error(fe):
			out = append(out, fe)
		default:
			if j, ok := e.(interface{ Unwrap() []error }); ok {
				for _, inner := range j.Unwrap() {
					walk(inner)
				}
			} else if errors.As(e, &fe) {
				out = append(out, fe)
			}
		}
	}
	walk(err)
	return out
}
