// Package apikey is the model of API keys: long-lived credentials that a
// user creates for a program, with a name, an optional expiry and a scope.
// A key's secret is shown once, when it is made; stores keep only its
// SHA-256 hash, and the id in front of the secret finds the record.
//
// A key reads "cfk_<id>_<secret>": id is 24 hex digits, secret 43
// characters of unpadded base64url (32 random bytes). The secret is long
// and random, so one SHA-256 is a safe hash for it: there is no password to
// guess, and checking a key costs no more than a store read.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
)

// Prefix starts every key, so a key is told from a JWT at a glance (and
// by secret scanners).
const Prefix = "cfk_"

// Scopes that stand for a whole role.
const (
	ScopeAdmin = "admin" // everything the owner's role allows
	ScopeUser  = "user"  // everything a user may do, even for an admin's key
)

// Actions of a narrow scope: "<resource>:read" allows the GET routes of a
// resource, "<resource>:write" the others.
const (
	ActionRead  = "read"
	ActionWrite = "write"
)

const (
	idBytes     = 12
	secretBytes = 32
)

// ErrMalformed is a token that does not have a key's form.
var ErrMalformed = errors.New("apikey: malformed key")

// Key is one stored API key. Hash is the hex SHA-256 of the secret; the
// secret itself is never stored.
type Key struct {
	ID     string
	Owner  string
	Name   string
	Scopes []string
	Hash   string

	CreatedAt time.Time
	// ExpiresAt is zero for a key that does not expire.
	ExpiresAt time.Time
	// LastUsedAt is when a request last used the key, to within the
	// gateway's touch interval; zero if never.
	LastUsedAt time.Time
	// RevokedAt is zero while the key is valid.
	RevokedAt time.Time
}

// Active reports whether the key may be used at now: not revoked and not
// expired.
func (k *Key) Active(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// New makes a key for owner and returns it with the token to give the user
// (the only time the secret exists outside the caller's request).
func New(owner, name string, scopes []string, now, expires time.Time) (*Key, string, error) {
	id := make([]byte, idBytes)
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	k := &Key{
		ID: hex.EncodeToString(id), Owner: owner, Name: name, Scopes: slices.Clone(scopes),
		CreatedAt: now, ExpiresAt: expires,
	}
	s := base64.RawURLEncoding.EncodeToString(secret)
	k.Hash = hashSecret(s)
	return k, Prefix + k.ID + "_" + s, nil
}

// IsKey reports whether a bearer token is an API key rather than a JWT.
func IsKey(token string) bool { return strings.HasPrefix(token, Prefix) }

// Parse splits a token into the key id and its secret.
func Parse(token string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(token, Prefix)
	if !ok {
		return "", "", ErrMalformed
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || len(secret) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return "", "", ErrMalformed
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", "", ErrMalformed
	}
	return id, secret, nil
}

// Matches reports whether secret is the key's, in constant time.
func (k *Key) Matches(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(k.Hash)) == 1
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Scope is the scope a request needs: resource and action, as in
// "tasks:write".
func Scope(resource, action string) string { return resource + ":" + action }

// SplitScope splits a narrow scope into resource and action; ok is false
// for a role scope or a malformed one.
func SplitScope(scope string) (resource, action string, ok bool) {
	resource, action, ok = strings.Cut(scope, ":")
	if !ok || resource == "" || (action != ActionRead && action != ActionWrite) {
		return "", "", false
	}
	return resource, action, true
}
