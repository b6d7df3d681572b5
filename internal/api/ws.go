package api

import (
	"net/http"

	"github.com/comfyfleet/comfyfleet/internal/push"
)

// serveWS is GET /ws: the client WebSocket. The token comes as ?token= or
// an Authorization header; without one the upgrade is refused with 401.
// The session ends when the token expires.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) error {
	c, err := s.deps.Auth.AuthenticateWebSocket(r)
	if err != nil {
		return authError(err)
	}
	client := push.Client{Username: c.Username, Admin: c.IsAdmin()}
	if c.ExpiresAt != nil {
		client.Expires = c.ExpiresAt.Time
	}
	s.deps.Hub.Serve(w, r, client)
	return nil
}
