package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// cheapHash is a bcrypt hash at the lowest cost, fast under -race.
func cheapHash(t *testing.T, password string) string {
	t.Helper()
	h, err := hashPassword(password, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// testConfig has alice (admin) and bob (user), passwords "<name>-password".
func testConfig(t *testing.T) config.Config {
	t.Helper()
	c := config.Config{DataDir: t.TempDir()}
	c.Auth.Users = []config.User{
		{Username: "alice", Role: RoleAdmin, PasswordHash: cheapHash(t, "alice-password")},
		{Username: "bob", Role: RoleUser, PasswordHash: cheapHash(t, "bob-password")},
	}
	c.WithDefaults()
	return c
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newTestAuth(t *testing.T) (*Authenticator, *clock) {
	t.Helper()
	users, _, err := loadUsers(testConfig(t), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0}
	a, err := New(Params{Users: users, Secret: testSecret, TokenTTL: time.Hour, LoginRateLimit: 5, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return a, clk
}

func TestHashAndCheckPassword(t *testing.T) {
	t.Parallel()
	h := cheapHash(t, "correct horse")
	if err := CheckPassword(h, "correct horse"); err != nil {
		t.Errorf("CheckPassword(right) = %v, want nil", err)
	}
	if err := CheckPassword(h, "wrong horse"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("CheckPassword(wrong) = %v, want ErrInvalidCredentials", err)
	}
	if err := CheckPassword("not a hash", "x"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("CheckPassword(bad hash) = %v, want ErrInvalidCredentials", err)
	}
	// The same bounds as auth.adminPassword (8..72 bytes).
	for _, pw := range []string{"", "short", "seven77", strings.Repeat("x", 73)} {
		if _, err := HashPassword(pw); err == nil || !strings.Contains(err.Error(), "8..72 bytes") {
			t.Errorf("HashPassword(%d bytes): %v, want an error giving the bounds", len(pw), err)
		}
	}
}

func TestUsersCheck(t *testing.T) {
	t.Parallel()
	users, _, err := loadUsers(testConfig(t), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u, err := users.Check("alice", "alice-password")
	if err != nil || u != (User{Username: "alice", Role: RoleAdmin}) {
		t.Errorf("Check(alice, right) = %+v, %v", u, err)
	}
	_, wrongPassword := users.Check("alice", "bob-password")
	_, wrongUser := users.Check("carol", "alice-password")
	if !errors.Is(wrongPassword, ErrInvalidCredentials) || wrongPassword != wrongUser {
		t.Errorf("wrong password: %v, wrong user: %v; want the same ErrInvalidCredentials", wrongPassword, wrongUser)
	}
	if c, err := bcrypt.Cost(users.dummy); err != nil || c != bcrypt.MinCost {
		t.Errorf("dummy hash cost = %d, %v; want the users' cost %d", c, err, bcrypt.MinCost)
	}
}

func TestLoadUsers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mutate   func(c *config.Config)
		user     string
		password string
	}{
		{"configured users", func(c *config.Config) {}, "bob", "bob-password"},
		{"demo", func(c *config.Config) { c.Auth.Users, c.Demo = nil, true }, "admin", "admin123"},
		{"admin password", func(c *config.Config) { c.Auth.Users, c.Auth.AdminPassword = nil, "from-the-env" }, "admin", "from-the-env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testConfig(t)
			tt.mutate(&c)
			users, generated, err := loadUsers(c, bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			if generated != "" {
				t.Errorf("generated = %q, want none", generated)
			}
			if _, err := users.Check(tt.user, tt.password); err != nil {
				t.Errorf("Check(%s): %v", tt.user, err)
			}
			if _, err := os.Stat(filepath.Join(c.DataDir, adminHashFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was written (%v), want no file", adminHashFile, err)
			}
		})
	}
}

func TestLoadUsersGeneratesAdminOnce(t *testing.T) {
	t.Parallel()
	c := config.Config{DataDir: filepath.Join(t.TempDir(), "data")}
	c.WithDefaults()
	users, password, err := loadUsers(c, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if len(password) < 16 {
		t.Fatalf("generated password %q, want 16+ characters", password)
	}
	if u, err := users.Check("admin", password); err != nil || u.Role != RoleAdmin {
		t.Fatalf("Check(admin, generated) = %+v, %v", u, err)
	}
	info, err := os.Stat(filepath.Join(c.DataDir, adminHashFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin hash file: %v, mode %v; want 0600", err, info.Mode())
	}

	// Restart: same data dir.
	again, password2, err := loadUsers(c, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if password2 != "" {
		t.Errorf("second start generated %q, want nothing", password2)
	}
	if _, err := again.Check("admin", password); err != nil {
		t.Errorf("the first password no longer works after a restart: %v", err)
	}
}

func TestLoadUsersBadHashFile(t *testing.T) {
	t.Parallel()
	c := config.Config{DataDir: t.TempDir()}
	c.WithDefaults()
	if err := os.WriteFile(filepath.Join(c.DataDir, adminHashFile), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadUsers(c, bcrypt.MinCost); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("loadUsers with a corrupt %s: %v, want an error saying to delete it", adminHashFile, err)
	}
}

func TestLoadSecret(t *testing.T) {
	t.Parallel()
	c := config.Config{DataDir: filepath.Join(t.TempDir(), "data")}
	c.WithDefaults()
	first, err := LoadSecret(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != secretBytes {
		t.Errorf("secret is %d bytes, want %d", len(first), secretBytes)
	}
	again, err := LoadSecret(c)
	if err != nil || string(again) != string(first) {
		t.Errorf("second LoadSecret = %x, %v; want the first secret %x", again, err, first)
	}
	info, err := os.Stat(filepath.Join(c.DataDir, secretFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v; want 0600", err, info.Mode())
	}

	c.Auth.Secret = string(testSecret)
	if got, err := LoadSecret(c); err != nil || string(got) != string(testSecret) {
		t.Errorf("LoadSecret with a configured secret = %q, %v", got, err)
	}

	if err := os.WriteFile(filepath.Join(c.DataDir, secretFile), []byte("abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Auth.Secret = ""
	if _, err := LoadSecret(c); err == nil {
		t.Error("LoadSecret with a short secret file: got no error")
	}
}

func TestLoadSecretConcurrentFirstStart(t *testing.T) {
	t.Parallel()
	c := config.Config{DataDir: t.TempDir()}
	c.WithDefaults()
	secrets := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range secrets {
		wg.Go(func() {
			s, err := LoadSecret(c)
			if err != nil {
				t.Error(err)
			}
			secrets[i] = s
		})
	}
	wg.Wait()
	for i, s := range secrets {
		if string(s) != string(secrets[0]) {
			t.Errorf("secret %d = %x, want %x like the first", i, s, secrets[0])
		}
	}
	if left, _ := filepath.Glob(filepath.Join(c.DataDir, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	a, clk := newTestAuth(t)
	token, exp, err := a.Issue(User{Username: "bob", Role: RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour); !exp.Equal(want) {
		t.Errorf("expiresAt = %v, want %v", exp, want)
	}
	clk.advance(59 * time.Minute)
	c, err := a.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := &Claims{Username: "bob", Role: RoleUser, PasswordVersion: a.versions["bob"], Issuer: "comfyfleet",
		IssuedAt: jwt.NewNumericDate(t0), ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour))}
	if len(want.PasswordVersion) != 16 {
		t.Errorf("password version %q, want 16 characters", want.PasswordVersion)
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("claims mismatch (-want +got):\n%s", diff)
	}
	if c.IsAdmin() {
		t.Error("bob IsAdmin")
	}
	header, _, _ := strings.Cut(token, ".")
	if h, _ := base64.RawURLEncoding.DecodeString(header); !strings.Contains(string(h), `"alg":"HS256"`) {
		t.Errorf("token header %s, want HS256", h)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuth(t)
	valid, _, err := a.Issue(User{Username: "alice", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	claims := func() *Claims {
		return &Claims{Username: "alice", Role: RoleAdmin, Issuer: "comfyfleet",
			IssuedAt: jwt.NewNumericDate(t0), ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour))}
	}
	sign := func(m jwt.SigningMethod, c *Claims, key any) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	tests := map[string]string{
		"alg none":     sign(jwt.SigningMethodNone, claims(), jwt.UnsafeAllowNoneSignatureType),
		"HS384":        sign(jwt.SigningMethodHS384, claims(), testSecret),
		"RS256":        sign(jwt.SigningMethodRS256, claims(), rsaKey),
		"other secret": sign(jwt.SigningMethodHS256, claims(), []byte("another-secret-another-secret-xx")),
		"tampered payload": parts[0] + "." + base64.RawURLEncoding.EncodeToString(
			[]byte(`{"sub":"bob","role":"admin","iss":"comfyfleet","exp":1704070800}`)) + "." + parts[2],
		"tampered signature": parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"no expiry":          sign(jwt.SigningMethodHS256, func() *Claims { c := claims(); c.ExpiresAt = nil; return c }(), testSecret),
		"expired":            sign(jwt.SigningMethodHS256, func() *Claims { c := claims(); c.ExpiresAt = jwt.NewNumericDate(t0.Add(-time.Second)); return c }(), testSecret),
		"other issuer":       sign(jwt.SigningMethodHS256, func() *Claims { c := claims(); c.Issuer = "someone"; return c }(), testSecret),
		"unknown user":       sign(jwt.SigningMethodHS256, func() *Claims { c := claims(); c.Username = "mallory"; return c }(), testSecret),
		"garbage":            "not.a.token",
		"empty":              "",
	}
	for name, token := range tests {
		if _, err := a.Verify(token); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: Verify = %v, want ErrBadToken", name, err)
		}
	}
}

// flip changes the middle character of a base64url string.
func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestPasswordChangeRevokesTokens: a token stops working once its user's
// password hash changes in the config (after a restart, or on another
// replica with the new config), and keeps working for everyone else, and
// across starts and replicas whose config is the same.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Auth.Secret = string(testSecret)
	before := openAuth(t, cfg)
	alice := login(t, before, "alice", "alice-password")
	bob := login(t, before, "bob", "bob-password")

	same := openAuth(t, cfg) // a restart, or another replica
	for name, tok := range map[string]string{"alice": alice, "bob": bob} {
		if _, err := same.Verify(tok); err != nil {
			t.Errorf("%s's token with the same config: %v", name, err)
		}
	}
	cfg.Auth.Users[0].PasswordHash = cheapHash(t, "alice-new-password")
	after := openAuth(t, cfg)
	if _, err := after.Verify(alice); !errors.Is(err, ErrBadToken) {
		t.Errorf("alice's token after her password changed: %v, want ErrBadToken", err)
	}
	if _, err := after.Verify(bob); err != nil {
		t.Errorf("bob's token after alice's password changed: %v", err)
	}
	if _, err := after.Verify(login(t, after, "alice", "alice-new-password")); err != nil {
		t.Errorf("alice's new token: %v", err)
	}

	// A password given in the config is hashed anew at every start: the
	// version follows the password, not the salt.
	admin := config.Config{DataDir: t.TempDir(), Auth: config.Auth{Secret: string(testSecret), AdminPassword: "admin-password-1"}}
	admin.WithDefaults()
	tok := login(t, openAuth(t, admin), "admin", "admin-password-1")
	if _, err := openAuth(t, admin).Verify(tok); err != nil {
		t.Errorf("admin's token after a restart with the same adminPassword: %v", err)
	}
	admin.Auth.AdminPassword = "admin-password-2"
	if _, err := openAuth(t, admin).Verify(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("admin's token after adminPassword changed: %v, want ErrBadToken", err)
	}
}

func openAuth(t *testing.T, cfg config.Config) *Authenticator {
	t.Helper()
	users, _, err := loadUsers(cfg, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := LoadSecret(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Params{Users: users, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func login(t *testing.T, a *Authenticator, user, password string) string {
	t.Helper()
	tok, _, _, err := a.Login(t.Context(), "127.0.0.1", user, password)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return tok
}

func TestVerifyExpiredAfterTTL(t *testing.T) {
	t.Parallel()
	a, clk := newTestAuth(t)
	token, _, err := a.Issue(User{Username: "alice", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Hour + time.Second)
	if _, err := a.Verify(token); !errors.Is(err, ErrBadToken) || !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("Verify after the TTL = %v, want ErrBadToken (expired)", err)
	}
}

func TestVerifyUsesCurrentRole(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuth(t)
	token, _, err := a.Issue(User{Username: "bob", Role: RoleAdmin}) // bob was an admin once
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Verify(token)
	if err != nil || c.IsAdmin() {
		t.Errorf("Verify = %+v, %v; want bob with his current role user", c, err)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuth(t)
	token, _, err := a.Issue(User{Username: "alice", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target string
		header       map[string]string
		wantErr      error
	}{
		{"bearer header", "/api/tasks", map[string]string{"Authorization": "Bearer " + token}, nil},
		{"lower-case scheme", "/api/tasks", map[string]string{"Authorization": "bearer " + token}, nil},
		// A token in the URL is for /ws only (AuthenticateWebSocket).
		{"query of a websocket upgrade", "/api/tasks?token=" + token, map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}, ErrNoToken},
		{"query", "/api/tasks?token=" + token, nil, ErrNoToken},
		{"nothing", "/api/tasks", nil, ErrNoToken},
		{"basic auth", "/api/tasks", map[string]string{"Authorization": "Basic YWxpY2U6eA=="}, ErrBadToken},
		{"empty bearer", "/api/tasks", map[string]string{"Authorization": "Bearer "}, ErrBadToken},
		{"bad token", "/api/tasks", map[string]string{"Authorization": "Bearer " + flip(token)}, ErrBadToken},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.target, nil)
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		c, err := a.Authenticate(r)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: Authenticate = %v, want %v", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || c.Username != "alice" || !c.IsAdmin() {
			t.Errorf("%s: Authenticate = %+v, %v; want alice, admin", tt.name, c, err)
		}
	}
}

func TestAuthenticateWebSocket(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuth(t)
	token, _, err := a.Issue(User{Username: "alice", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target, header string
		wantErr              error
	}{
		{"query", "/ws?token=" + token, "", nil},
		{"header", "/ws", "Bearer " + token, nil},
		{"header wins over the query", "/ws?token=x.y.z", "Bearer " + token, nil},
		{"bad query token", "/ws?token=x.y.z", "", ErrBadToken},
		{"nothing", "/ws", "", ErrNoToken},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.target, nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		c, err := a.AuthenticateWebSocket(r)
		switch {
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("%s: AuthenticateWebSocket = %v, want %v", tt.name, err, tt.wantErr)
		case tt.wantErr == nil && (err != nil || c.Username != "alice"):
			t.Errorf("%s: AuthenticateWebSocket = %+v, %v; want alice", tt.name, c, err)
		}
	}
}

func TestClaimsContext(t *testing.T) {
	t.Parallel()
	if _, ok := ClaimsFrom(t.Context()); ok {
		t.Error("ClaimsFrom(empty context) found claims")
	}
	want := &Claims{Username: "bob", Role: RoleUser}
	got, ok := ClaimsFrom(WithClaims(t.Context(), want))
	if !ok || got != want {
		t.Errorf("ClaimsFrom = %v, %v; want %v", got, ok, want)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuth(t)
	token, user, exp, err := a.Login(t.Context(), "10.0.0.1:5555", "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if user != (User{Username: "alice", Role: RoleAdmin}) || !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("Login = %+v, %v", user, exp)
	}
	if c, err := a.Verify(token); err != nil || c.Username != "alice" {
		t.Errorf("Verify(login token) = %+v, %v", c, err)
	}
	_, _, _, wrongUser := a.Login(t.Context(), "10.0.0.1", "mallory", "alice-password")
	_, _, _, wrongPassword := a.Login(t.Context(), "10.0.0.1", "alice", "nope")
	if !errors.Is(wrongUser, ErrInvalidCredentials) || wrongUser != wrongPassword {
		t.Errorf("wrong user: %v, wrong password: %v; want the same ErrInvalidCredentials", wrongUser, wrongPassword)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, _, err := a.Login(ctx, "10.0.0.1", "alice", "alice-password"); !errors.Is(err, context.Canceled) {
		t.Errorf("Login(cancelled) = %v, want context.Canceled", err)
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	a, clk := newTestAuth(t)
	login := func(addr, user, password string) error {
		_, _, _, err := a.Login(t.Context(), addr, user, password)
		return err
	}
	for i := range 5 {
		if err := login("10.0.0.1:1000", "alice", "wrong"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v, want ErrInvalidCredentials", i+1, err)
		}
		clk.advance(time.Second)
	}
	// Limited, even with the right password and from another port.
	err := login("10.0.0.1:2000", "alice", "alice-password")
	var limited *RateLimitError
	if !errors.As(err, &limited) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("6th attempt: %v, want a RateLimitError", err)
	}
	if want := 55 * time.Second; limited.RetryAfter != want {
		t.Errorf("RetryAfter = %v, want %v", limited.RetryAfter, want)
	}
	// Other addresses and other usernames are not limited.
	if err := login("10.0.0.2", "alice", "alice-password"); err != nil {
		t.Errorf("other address: %v", err)
	}
	if err := login("10.0.0.1", "bob", "bob-password"); err != nil {
		t.Errorf("other username: %v", err)
	}
	// Once the first failure is a minute old, one more attempt is allowed.
	clk.advance(55 * time.Second)
	if err := login("10.0.0.1", "alice", "wrong"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("after the window: %v, want ErrInvalidCredentials", err)
	}
	if err := login("10.0.0.1", "alice", "alice-password"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("limit reached again: %v, want ErrRateLimited", err)
	}
	// A success clears the failures.
	clk.advance(time.Second)
	if err := login("10.0.0.1", "alice", "alice-password"); err != nil {
		t.Fatalf("success: %v", err)
	}
	for i := range 5 {
		if err := login("10.0.0.1", "alice", "wrong"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d after a success: %v, want ErrInvalidCredentials", i+1, err)
		}
	}
}

func TestLimiterIsBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(2)
	l.maxKeys = 3
	now := t0
	for i := range 10 {
		if _, ok := l.take(limitKey("10.0.0.1", strings.Repeat("u", i)), now); !ok {
			t.Fatalf("take %d refused", i)
		}
		if len(l.failures) > l.maxKeys {
			t.Fatalf("%d keys remembered, want at most %d", len(l.failures), l.maxKeys)
		}
	}
	// Keys whose failures left the window go first.
	now = now.Add(2 * time.Minute)
	l.take(limitKey("10.0.0.9", "x"), now)
	if len(l.failures) != 1 {
		t.Errorf("%d keys after the window, want 1", len(l.failures))
	}
	if k := limitKey("[::1]:80", strings.Repeat("u", 1000)); len(k) != len("::1")+1+limitMaxUsername {
		t.Errorf("limitKey length %d, want it bounded", len(k))
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	c := testConfig(t)
	a, generated, err := Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if generated != "" {
		t.Errorf("generated = %q with configured users", generated)
	}
	if _, _, _, err := a.Login(t.Context(), "127.0.0.1", "bob", "bob-password"); err != nil {
		t.Errorf("Login: %v", err)
	}
	if _, err := New(Params{Users: a.users, Secret: []byte("short")}); err == nil {
		t.Error("New with a short secret: got no error")
	}
}
