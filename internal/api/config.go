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

// putConfig is PUT /api/config: merge, validate, apply live, persist.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		return err
	}
	var probe map[string]any
	if err := decodeBytes(body, &probe); err != nil {
		return err
	}
	cfg, err := s.deps.Config.Update(r.Context(), body)
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_config",
			Message: fe.Error(), Data: map[string]string{"field": fe.Field}}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, cfg.Public())
}
