package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

const (
	// secretFile, in the data dir, keeps the generated signing secret (hex).
	secretFile = "jwt.secret"
	// secretBytes is the size of a generated secret (HS256 wants 256 bits).
	secretBytes = 32
)

// LoadSecret returns the token signing secret: cfg.Auth.Secret when set,
// otherwise the one kept in <dataDir>/jwt.secret (mode 0600), generated
// (32 random bytes) the first time, so tokens survive a restart.
func LoadSecret(cfg config.Config) ([]byte, error) {
	if cfg.Auth.Secret != "" {
		return []byte(cfg.Auth.Secret), nil
	}
	path := filepath.Join(cfg.DataDir, secretFile)
	data, _, err := loadOrCreate(path, func() ([]byte, error) {
		b := make([]byte, secretBytes)
		_, _ = rand.Read(b) // crypto/rand.Read never fails
		return []byte(hex.EncodeToString(b) + "\n"), nil
	})
	if err != nil {
		return nil, err
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(secret) < secretBytes {
		return nil, fmt.Errorf("auth: %s must hold at least %d hex-encoded bytes (delete it to generate a new secret; logins are lost)", path, secretBytes)
	}
	return secret, nil
}

// loadOrCreate returns the content of the file at path, creating it with
// the output of create (mode 0600, its directory 0700) when it does not
// exist. The file appears whole or not at all, and when two processes race
// the first one's file wins: created reports whether it was this call's.
func loadOrCreate(path string, create func() ([]byte, error)) (data []byte, created bool, err error) {
	data, err = os.ReadFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return data, false, wrapFileErr(path, err)
	}
	if data, err = create(); err != nil {
		return nil, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("auth: create %s: %w", dir, err)
	}
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return nil, false, fmt.Errorf("auth: write %s: %w", path, err)
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		// No hard links on this file system: a rename is atomic, though
		// not exclusive.
		err = os.Rename(tmp, path)
	}
	if errors.Is(err, fs.ErrExist) {
		data, err = os.ReadFile(path)
		return data, false, wrapFileErr(path, err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("auth: create %s: %w", path, err)
	}
	return data, true, nil
}

// writeTemp writes data to a new 0600 file in dir and returns its name.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func wrapFileErr(path string, err error) error {
	if err != nil {
		return fmt.Errorf("auth: read %s: %w", path, err)
	}
	return nil
}
