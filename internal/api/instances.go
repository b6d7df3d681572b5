package api

import (
	"net/http"

	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// listInstances is GET /api/instances. A user sees the current task's id
// of an instance only when the task is theirs (fleet.View.ForViewer).
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) error {
	views, err := s.deps.Fleet.Views(r.Context())
	if err != nil {
		return err
	}
	for i := range views {
		views[i] = viewFor(r, views[i])
	}
	return writeJSON(w, views)
}

// getInstance is GET /api/instances/{id}.
func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) error {
	v, err := s.deps.Fleet.View(r.Context(), r.PathValue("id"))
	if err != nil {
		return instanceErr(err, r.PathValue("id"))
	}
	return writeJSON(w, viewFor(r, v))
}

// viewFor is v as the caller may see it.
func viewFor(r *http.Request, v fleet.View) fleet.View {
	c := claims(r)
	return v.ForViewer(c.Username, c.IsAdmin())
}

type putInstanceRequest struct {
	Enabled *bool `json:"enabled"`
}

// putInstance is PUT /api/instances/{id}: enable or disable (drain).
func (s *Server) putInstance(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := s.deps.Fleet.Lookup(id); !ok {
		return instanceErr(store.ErrNotFound, id)
	}
	var req putInstanceRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_field",
			Message: "Field \"enabled\" (true or false) is required.", Data: map[string]string{"field": "enabled"}}
	}
	// An operator's choice clears an automatic drain: a probe does not undo it.
	if _, err := s.deps.Fleet.Update(r.Context(), fleet.Enable(id, *req.Enabled)); err != nil {
		return err
	}
	v, err := s.deps.Fleet.View(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, viewFor(r, v))
}

func instanceErr(err error, id string) error {
	if err == store.ErrNotFound {
		return errorf(http.StatusNotFound, "instance_not_found", "No instance %q; ids are ip:port.", id)
	}
	return err
}
