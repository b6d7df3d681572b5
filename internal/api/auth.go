package api

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/comfyfleet/comfyfleet/internal/auth"
)

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type userView struct {
	Username string `json:"username"`
	Role     string `json:"role"`
}

// login is POST /api/auth/login.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeJSONLimit(w, r, &req, loginBodyLimit); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_request",
			Message: "username and password are required.", Data: map[string]string{"field": "username"}}
	}
	token, user, exp, err := s.deps.Auth.Login(r.Context(), s.clientAddr(r), req.Username, req.Password)
	var limited *auth.RateLimitError
	switch {
	case errors.As(err, &limited):
		secs := int(math.Ceil(limited.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		return errorf(http.StatusTooManyRequests, "too_many_attempts", "Too many failed logins; try again in %d seconds.", max(secs, 1))
	case errors.Is(err, auth.ErrInvalidCredentials):
		return errorf(http.StatusUnauthorized, "invalid_credentials", "Wrong username or password.")
	case err != nil:
		return err
	}
	return writeJSON(w, map[string]any{
		"token":     token,
		"user":      userView{Username: user.Username, Role: user.Role},
		"expiresAt": formatTime(exp),
	})
}

// me is GET /api/auth/me: who the token belongs to.
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	c := claims(r)
	return writeJSON(w, userView{Username: c.Username, Role: c.Role})
}
