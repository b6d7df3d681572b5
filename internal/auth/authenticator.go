package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

// issuer is the "iss" of every token.
const issuer = "comfyfleet"

// Authenticator logs users in, issues their tokens and checks the tokens
// of requests. It is safe for concurrent use.
type Authenticator struct {
	users  *Users
	secret []byte
	// versions holds each user's password version (see passwordVersion).
	versions map[string]string
	ttl      time.Duration
	now      func() time.Time
	parser   *jwt.Parser
	limiter  *limiter
}

// Params configure New.
type Params struct {
	// Users may log in. Required.
	Users *Users
	// Secret signs the tokens (HS256), at least 32 bytes. Required.
	Secret []byte
	// TokenTTL is how long a token lasts. Default 24h.
	TokenTTL time.Duration
	// LoginRateLimit is how many failed logins per minute one client
	// address may make for one username. Default 5.
	LoginRateLimit int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// New returns an Authenticator.
func New(p Params) (*Authenticator, error) {
	if p.Users == nil {
		return nil, errors.New("auth: no users")
	}
	if len(p.Secret) < secretBytes {
		return nil, fmt.Errorf("auth: the signing secret must be at least %d bytes", secretBytes)
	}
	if p.TokenTTL <= 0 {
		p.TokenTTL = 24 * time.Hour
	}
	if p.LoginRateLimit <= 0 {
		p.LoginRateLimit = 5
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	versions := make(map[string]string, len(p.Users.byName))
	for name, acct := range p.Users.byName {
		versions[name] = passwordVersion(p.Secret, name, acct.credential())
	}
	return &Authenticator{
		users:    p.Users,
		secret:   p.Secret,
		versions: versions,
		ttl:      p.TokenTTL,
		now:      p.Now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(p.Now),
		),
		limiter: newLimiter(p.LoginRateLimit),
	}, nil
}

// Open builds the Authenticator of a defaulted, validated config: its
// users (LoadUsers), its secret (LoadSecret) and its limits. generated is
// the admin password made at first start, to print once; "" otherwise.
// now is the clock (nil: time.Now).
func Open(cfg config.Config, now func() time.Time) (a *Authenticator, generated string, err error) {
	users, generated, err := LoadUsers(cfg)
	if err != nil {
		return nil, "", err
	}
	secret, err := LoadSecret(cfg)
	if err != nil {
		return nil, "", err
	}
	a, err = New(Params{
		Users: users, Secret: secret, Now: now,
		TokenTTL:       time.Duration(cfg.Auth.TokenTTL),
		LoginRateLimit: cfg.Auth.LoginRateLimit,
	})
	return a, generated, err
}

// Issue returns a signed token for u and when it expires (whole seconds,
// UTC, as in the token).
func (a *Authenticator) Issue(u User) (token string, expiresAt time.Time, err error) {
	now := a.now()
	expiresAt = now.Add(a.ttl).Truncate(time.Second).UTC()
	claims := &Claims{
		Username:        u.Username,
		Role:            u.Role,
		PasswordVersion: a.versions[u.Username],
		Issuer:          issuer,
		IssuedAt:        jwt.NewNumericDate(now),
		ExpiresAt:       jwt.NewNumericDate(expiresAt),
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, expiresAt, nil
}

// Verify checks a token: signed with the secret by HS256 (any other
// algorithm, "none" included, is refused), issued by comfyfleet, not
// expired, for a user who still exists and whose password has not changed
// since (a new passwordHash in the config, on every replica that has it).
// The claims carry the user's current role. Every failure is ErrBadToken.
func (a *Authenticator) Verify(token string) (*Claims, error) {
	var c Claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	u, ok := a.users.Lookup(c.Username)
	if !ok {
		return nil, fmt.Errorf("%w: no user %q", ErrBadToken, c.Username)
	}
	if !hmac.Equal([]byte(c.PasswordVersion), []byte(a.versions[c.Username])) {
		return nil, fmt.Errorf("%w: the password of %q changed since the token was issued", ErrBadToken, c.Username)
	}
	c.Role = u.Role
	return &c, nil
}

// passwordVersion names the password of a user without revealing it: an
// HMAC of the user's credential (see account.credential) keyed with the
// signing secret, so the same config gives the same version on every
// replica and every start, and a new password another one.
func passwordVersion(secret []byte, username string, credential []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("comfyfleet password version\x00" + username + "\x00"))
	m.Write(credential)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// Authenticate verifies the token of a request: "Authorization: Bearer
// <token>". No token is ErrNoToken; a bad one, or an Authorization header
// of another scheme, is ErrBadToken. A token in the query is not looked at:
// URLs end up in logs and browser histories (see AuthenticateWebSocket).
func (a *Authenticator) Authenticate(r *http.Request) (*Claims, error) {
	token, err := headerToken(r)
	if err != nil {
		return nil, err
	}
	return a.Verify(token)
}

// AuthenticateWebSocket is Authenticate for the /ws upgrade, which browsers
// cannot give headers: the query parameter "token" is accepted too.
func (a *Authenticator) AuthenticateWebSocket(r *http.Request) (*Claims, error) {
	token, err := headerToken(r)
	if errors.Is(err, ErrNoToken) {
		if token = r.URL.Query().Get("token"); token != "" {
			err = nil
		}
	}
	if err != nil {
		return nil, err
	}
	return a.Verify(token)
}

// RequestToken returns the bearer token of a request, a JWT or an API key:
// the Authorization header's, or with query set (the /ws upgrade) the
// query parameter "token" when there is no header. No token is
// ErrNoToken; an Authorization header of another scheme is ErrBadToken.
func RequestToken(r *http.Request, query bool) (string, error) {
	token, err := headerToken(r)
	if query && errors.Is(err, ErrNoToken) {
		if token = r.URL.Query().Get("token"); token != "" {
			err = nil
		}
	}
	return token, err
}

// User returns a configured user by name: the owner of an API key is
// looked up on every use, so a removed user's keys stop working and a
// changed role applies at once.
func (a *Authenticator) User(name string) (User, bool) { return a.users.Lookup(name) }

// headerToken finds the bearer token of r's Authorization header.
func headerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", ErrNoToken
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", fmt.Errorf(`%w: the Authorization header is not "Bearer <token>"`, ErrBadToken)
	}
	return token, nil
}

// Login checks a username and password and returns a token for the user.
// remoteAddr is the client's address as the caller trusts it ("ip" or
// "ip:port"): failed logins are limited per address and username, and once
// the limit is reached every attempt, right or wrong, is a
// *RateLimitError (ErrRateLimited) until the oldest failure is a minute
// old. A wrong username and a wrong password are both
// ErrInvalidCredentials. A success clears the failures of its address and
// username.
func (a *Authenticator) Login(ctx context.Context, remoteAddr, username, password string) (token string, user User, expiresAt time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return "", User{}, time.Time{}, err
	}
	key := limitKey(remoteAddr, username)
	if wait, ok := a.limiter.take(key, a.now()); !ok {
		return "", User{}, time.Time{}, &RateLimitError{RetryAfter: wait}
	}
	user, err = a.users.Check(username, password)
	if err != nil {
		return "", User{}, time.Time{}, err
	}
	a.limiter.forget(key)
	token, expiresAt, err = a.Issue(user)
	if err != nil {
		return "", User{}, time.Time{}, err
	}
	return token, user, expiresAt, nil
}
