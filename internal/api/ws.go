package api

import (
	"errors"
	"net/http"

	"github.com/comfyfleet/comfyfleet/internal/auth"
	"github.com/comfyfleet/comfyfleet/internal/push"
)

// serveWS is GET /ws: the client WebSocket. The token comes as ?token= or
// an Authorization header; without one the upgrade is refused with 401.
// The session ends when the token expires.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) error {
	c, err := s.authenticate(r, true)
	switch {
	case errors.Is(err, auth.ErrNoToken) || errors.Is(err, auth.ErrBadToken):
		return authError(err)
	case err != nil:
		return err
	case !c.Allows(wsScope):
		return scopeError(wsScope)
	}
	client := push.Client{Username: c.Username, Admin: c.IsAdmin(), KeyID: c.KeyID}
	if c.ExpiresAt != nil {
		client.Expires = c.ExpiresAt.Time
	}
	s.deps.Hub.Serve(w, r, client)
	return nil
}
