// Package auth handles logins and tokens: bcrypt password hashes, the user
// list built from the config (with a default admin whose password is given
// or generated once), HS256 JWTs whose secret is configured or generated
// once and kept in the data dir, a limit on failed logins per client
// address and username, and the caller's claims in a request context.
//
// It knows nothing of the API's error envelope: Authenticate and Login
// return the typed errors below and the API layer renders them.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles. An admin may do everything; a user submits tasks and sees, cancels
// and downloads only their own tasks and files.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// Errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidCredentials: wrong username or wrong password; the two are
	// not told apart (401).
	ErrInvalidCredentials = errors.New("auth: invalid username or password")
	// ErrRateLimited: too many failed logins for this address and username
	// (429). The error is a *RateLimitError, which says when to retry.
	ErrRateLimited = errors.New("auth: too many failed logins")
	// ErrNoToken: the request carries no token (401).
	ErrNoToken = errors.New("auth: no token")
	// ErrBadToken: the token is malformed, expired, wrongly signed, uses
	// another algorithm than HS256, or names a user who no longer exists (401).
	ErrBadToken = errors.New("auth: invalid token")
)

// RateLimitError is the ErrRateLimited of Login: RetryAfter is how long
// until the next attempt is allowed.
type RateLimitError struct {
	RetryAfter time.Duration
}

// Error says when to retry.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v; retry in %v", ErrRateLimited, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// User is someone who may log in.
type User struct {
	Username string `json:"username"`
	Role     string `json:"role"`
}

// Claims are what a verified token says: who (Username, the JWT "sub") and
// with which role, until when. PasswordVersion ("pwv") is derived from the
// user's password hash and the signing secret: a token is valid only while
// the user's password is the one it was issued for.
type Claims struct {
	Username        string           `json:"sub"`
	Role            string           `json:"role"`
	PasswordVersion string           `json:"pwv"`
	Issuer          string           `json:"iss"`
	IssuedAt        *jwt.NumericDate `json:"iat"`
	ExpiresAt       *jwt.NumericDate `json:"exp"`

	// KeyID is the id of the API key the request came with; empty for a
	// login token.
	KeyID string `json:"-"`
	// Scopes narrows what an API key may do ("tasks:read", ...); nil
	// allows everything the role allows.
	Scopes []string `json:"-"`
}

var _ jwt.Claims = (*Claims)(nil)

// Allows reports whether the claims carry scope: always for a login
// token or a key with a role scope, else when scope is one of Scopes. An
// empty scope is always allowed.
func (c *Claims) Allows(scope string) bool {
	return scope == "" || c.Scopes == nil || slices.Contains(c.Scopes, scope)
}

// IsAdmin reports whether the token's user has the admin role.
func (c *Claims) IsAdmin() bool { return c.Role == RoleAdmin }

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt, nil }

// GetNotBefore implements jwt.Claims; tokens have no "nbf".
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Username, nil }

// GetAudience implements jwt.Claims; tokens have no "aud".
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) { return nil, nil }

// claimsKey is the context key of the claims.
type claimsKey struct{}

// WithClaims returns a context carrying the caller's claims.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the claims WithClaims put in ctx.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}
