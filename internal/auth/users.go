package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

const (
	// defaultAdmin is the user of a config without users.
	defaultAdmin = "admin"
	// demoPassword is the demo mode's well-known admin password (the seed's).
	demoPassword = "admin123"
	// adminHashFile, in the data dir, keeps the hash of the generated admin password.
	adminHashFile = "admin.hash"
)

// HashPassword returns the bcrypt hash of password, as auth.users wants it
// (the "comfyfleet hash-password" subcommand prints it). The password must
// be as long as auth.adminPassword must: config.MinPasswordBytes to
// config.MaxPasswordBytes (bcrypt ignores the bytes past 72).
func HashPassword(password string) (string, error) {
	if n := len(password); n < config.MinPasswordBytes || n > config.MaxPasswordBytes {
		return "", fmt.Errorf("auth: a password must be %d..%d bytes long, not %d",
			config.MinPasswordBytes, config.MaxPasswordBytes, n)
	}
	h, err := hashPassword(password, bcrypt.DefaultCost)
	return string(h), err
}

func hashPassword(password string, cost int) ([]byte, error) {
	if password == "" {
		return nil, errors.New("auth: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return nil, fmt.Errorf("auth: hash password: %w", err)
	}
	return h, nil
}

// CheckPassword reports whether password matches the bcrypt hash: nil, or
// ErrInvalidCredentials.
func CheckPassword(hash, password string) error {
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return ErrInvalidCredentials
	}
	return nil
}

// Users is the set of users who may log in. It does not change while the
// gateway runs.
type Users struct {
	byName map[string]account
	// dummy is checked for unknown usernames, so that a wrong username
	// costs as much time as a wrong password.
	dummy []byte
}

type account struct {
	user User
	hash []byte
	// password is set when the hash was made at this start from a password
	// the config gives (demo mode, auth.adminPassword): its salt changes at
	// every start, the password does not.
	password string
}

// credential is what a password version is derived from: the hash, or the
// password when the hash is remade at every start.
func (a account) credential() []byte {
	if a.password != "" {
		return []byte("password\x00" + a.password)
	}
	return append([]byte("hash\x00"), a.hash...)
}

// LoadUsers builds the users from cfg (defaulted), in this order:
//
//   - cfg.Auth.Users when there are any;
//   - demo mode (cfg.Demo): "admin" / "admin123", the caller warns loudly;
//   - cfg.Auth.AdminPassword (COMFYFLEET_ADMIN_PASSWORD): "admin" with it;
//   - otherwise "admin" with the password whose hash is in
//     <dataDir>/admin.hash, generated at first start: generated is then the
//     new password, for the caller to print once. Later starts find the
//     hash and return generated "".
//
// Several replicas do not share their data dirs: give them the admin
// password or users in the config.
func LoadUsers(cfg config.Config) (users *Users, generated string, err error) {
	return loadUsers(cfg, bcrypt.DefaultCost)
}

// loadUsers is LoadUsers hashing new passwords at cost (tests use a cheap one).
func loadUsers(cfg config.Config, cost int) (*Users, string, error) {
	if len(cfg.Auth.Users) > 0 {
		return configuredUsers(cfg.Auth.Users)
	}
	admin := account{user: User{Username: defaultAdmin, Role: RoleAdmin}}
	var generated string
	var err error
	switch {
	case cfg.Demo:
		// The demo password is public: a costly hash would protect nothing
		// and slow down every demo start and login.
		admin.password = demoPassword
		admin.hash, err = hashPassword(demoPassword, bcrypt.MinCost)
	case cfg.Auth.AdminPassword != "":
		admin.password = cfg.Auth.AdminPassword
		admin.hash, err = hashPassword(cfg.Auth.AdminPassword, cost)
	default:
		admin.hash, generated, err = loadAdminHash(cfg.DataDir, cost)
	}
	if err != nil {
		return nil, "", err
	}
	u, err := newUsers([]account{admin})
	return u, generated, err
}

func configuredUsers(list []config.User) (*Users, string, error) {
	accounts := make([]account, len(list))
	for i, u := range list {
		if u.Role != RoleAdmin && u.Role != RoleUser {
			return nil, "", fmt.Errorf("auth: user %q: role %q is not admin or user", u.Username, u.Role)
		}
		accounts[i] = account{user: User{Username: u.Username, Role: u.Role}, hash: []byte(u.PasswordHash)}
	}
	u, err := newUsers(accounts)
	return u, "", err
}

// newUsers indexes the accounts. The dummy hash for unknown usernames is
// the costliest of theirs: checking it takes as long as checking a known
// user, and its result is never used.
func newUsers(accounts []account) (*Users, error) {
	u := &Users{byName: make(map[string]account, len(accounts))}
	dummyCost := 0
	for _, a := range accounts {
		c, err := bcrypt.Cost(a.hash)
		if err != nil {
			return nil, fmt.Errorf("auth: user %q: password hash: %w", a.user.Username, err)
		}
		if _, dup := u.byName[a.user.Username]; dup {
			return nil, fmt.Errorf("auth: user %q is listed twice", a.user.Username)
		}
		if c > dummyCost {
			u.dummy, dummyCost = a.hash, c
		}
		u.byName[a.user.Username] = a
	}
	if len(accounts) == 0 {
		return nil, errors.New("auth: no users")
	}
	return u, nil
}

// loadAdminHash reads the admin hash kept in dataDir, or generates a
// password and keeps its hash there.
func loadAdminHash(dataDir string, cost int) (hash []byte, generated string, err error) {
	path := filepath.Join(dataDir, adminHashFile)
	data, created, err := loadOrCreate(path, func() ([]byte, error) {
		generated = rand.Text() // 26 characters, 130 bits
		h, err := hashPassword(generated, cost)
		return append(h, '\n'), err
	})
	if err != nil {
		return nil, "", err
	}
	hash = []byte(strings.TrimSpace(string(data)))
	if _, err := bcrypt.Cost(hash); err != nil {
		return nil, "", fmt.Errorf("auth: %s is not a bcrypt hash (delete it to generate a new admin password): %w", path, err)
	}
	if !created {
		generated = ""
	}
	return hash, generated, nil
}

// Lookup returns the user named username.
func (u *Users) Lookup(username string) (User, bool) {
	a, ok := u.byName[username]
	return a.user, ok
}

// Check returns the user if password is theirs, and ErrInvalidCredentials
// otherwise. An unknown username costs the same bcrypt comparison as a
// known one and gives the same error.
func (u *Users) Check(username, password string) (User, error) {
	a, ok := u.byName[username]
	hash := a.hash
	if !ok {
		hash = u.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if !ok || err != nil {
		return User{}, ErrInvalidCredentials
	}
	return a.user, nil
}
