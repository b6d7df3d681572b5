package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/instance"
)

// FieldError is a problem with one setting. Field is its path as in the
// YAML file and the JSON of /api/config ("servers[1].ports",
// "healthCheck.interval"); the API returns it as data.field. Validate,
// Load, Set and Merge return FieldErrors, several joined with errors.Join:
// errors.As finds the first.
type FieldError struct {
	Field   string
	Message string
}

// Error is "<field>: <message>".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// checker collects FieldErrors.
type checker struct {
	errs []error
}

func (v *checker) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate checks every setting and returns every problem found, each a
// *FieldError naming its field, joined; nil when the config is usable.
// Call it after WithDefaults: a zero field is reported, not defaulted.
func (c Config) Validate() error {
	var v checker
	if c.DataDir == "" {
		v.add("dataDir", "must not be empty")
	}
	c.Server.validate(&v)
	c.Auth.validate(&v, c.Demo)
	c.Store.validate(&v)
	validateServers(&v, c.Servers)
	c.HealthCheck.validate(&v)
	c.Files.validate(&v)
	c.Scheduler.validate(&v)
	if c.Metrics.Listen != "" {
		validateListen(&v, "metrics.listen", c.Metrics.Listen)
	}
	return errors.Join(v.errs...)
}

func (h HTTP) validate(v *checker) {
	validateListen(v, "server.listen", h.Listen)
	if h.PublicBaseURL != "" {
		u, err := url.Parse(h.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			v.add("server.publicBaseUrl", "must be an http:// or https:// URL without query, like https://fleet.example.com")
		}
	}
	if h.MaxBodyBytes < 1 {
		v.add("server.maxBodyBytes", "must be at least 1")
	}
	if h.ReplicaID != "" && !isName(h.ReplicaID) {
		v.add("server.replicaId", "must be 1..64 characters without spaces or control characters")
	}
}

func validateListen(v *checker, field, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(field, "must be host:port or :port, like \":3000\"")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(field, "port %q out of range 0..65535", port)
	}
}

func (a Auth) validate(v *checker, demo bool) {
	if a.TokenTTL < Duration(time.Minute) {
		v.add("auth.tokenTtl", "must be at least 1m")
	}
	if a.Secret != "" && len(a.Secret) < 32 {
		v.add("auth.secret", "must be at least 32 characters (HS256 needs a 256-bit key)")
	}
	if a.LoginRateLimit < 1 {
		v.add("auth.loginRateLimit", "must be at least 1")
	}
	if a.AdminPassword != "" {
		switch {
		case len(a.Users) > 0:
			v.add("auth.adminPassword", "is only used when auth.users is empty")
		case demo:
			v.add("auth.adminPassword", "cannot be combined with demo mode, whose admin password is admin123")
		case len(a.AdminPassword) < 8 || len(a.AdminPassword) > 72:
			v.add("auth.adminPassword", "must be 8..72 bytes long")
		}
	}
	seen := map[string]int{}
	for i, u := range a.Users {
		validateUser(v, fmt.Sprintf("auth.users[%d]", i), u)
		if j, dup := seen[u.Username]; dup {
			v.add(fmt.Sprintf("auth.users[%d].username", i), "duplicate username %q (also auth.users[%d])", u.Username, j)
		}
		seen[u.Username] = i
	}
}

func validateUser(v *checker, field string, u User) {
	if !isName(u.Username) {
		v.add(field+".username", "must be 1..64 characters without spaces or control characters")
	}
	if u.Role != "admin" && u.Role != "user" {
		v.add(field+".role", `must be "admin" or "user"`)
	}
	if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
		v.add(field+".passwordHash", "must be a bcrypt hash (print one with: comfyfleet hash-password)")
	}
}

func (s Store) validate(v *checker) {
	switch s.Driver {
	case "sqlite":
		if s.Path == "" {
			v.add("store.path", "must not be empty")
		}
		if s.Sync != "normal" && s.Sync != "full" {
			v.add("store.sync", `must be "normal" or "full"`)
		}
	case "redis":
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			v.add("store.url", "must be a redis:// or rediss:// URL, like redis://127.0.0.1:6379/0")
		}
		if s.Prefix == "" {
			v.add("store.prefix", "must not be empty")
		}
	default:
		v.add("store.driver", `must be "sqlite" or "redis"`)
	}
	if s.LeaseTTL < Millis(3*time.Second) || s.LeaseTTL > Millis(5*time.Minute) {
		v.add("store.leaseTtl", "must be from 3000 to 300000 ms")
	}
}

func validateServers(v *checker, servers []Server) {
	ids := map[string]int{}
	owners := map[string]int{} // instance id -> server index
	for i, s := range servers {
		field := fmt.Sprintf("servers[%d]", i)
		if !isName(s.ID) {
			v.add(field+".id", "must be 1..64 characters without spaces or control characters")
		} else if j, dup := ids[s.ID]; dup {
			v.add(field+".id", "duplicate id %q (also servers[%d])", s.ID, j)
		}
		ids[s.ID] = i
		validateLabels(v, field+".labels", s.Labels)
		if !validHost(s.IP) {
			v.add(field+".ip", "must be an IP address or a host name, like 192.168.1.10")
			continue
		}
		validatePorts(v, field+".ports", s, i, owners)
	}
}

func validatePorts(v *checker, field string, s Server, index int, owners map[string]int) {
	if len(s.Ports) == 0 {
		v.add(field, "must list at least one port")
	}
	host := s.IP
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.String() // so "::1" and "0:0::1" are the same instance
	} else {
		host = strings.ToLower(host)
	}
	for _, p := range s.Ports {
		if p < 1 || p > 65535 {
			v.add(field, "port %d out of range 1..65535", p)
			continue
		}
		id := instance.ID(host, p)
		if j, dup := owners[id]; dup {
			if j == index {
				v.add(field, "port %d is listed twice", p)
			} else {
				v.add(field, "instance %s is already defined by servers[%d]", id, j)
			}
			continue
		}
		owners[id] = index
	}
}

// validHost accepts an IP address or a DNS host name (underscores allowed,
// as in Docker service names).
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// isName accepts an id or user name: 1..64 characters, no spaces or
// control characters.
func isName(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > 64 || !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) < 0
}

func (h HealthCheck) validate(v *checker) {
	if h.Interval < Millis(100*time.Millisecond) {
		v.add("healthCheck.interval", "must be at least 100 ms")
	}
	switch {
	case h.Timeout < Millis(100*time.Millisecond):
		v.add("healthCheck.timeout", "must be at least 100 ms")
	case h.Timeout > h.Interval && h.Interval >= Millis(100*time.Millisecond):
		v.add("healthCheck.timeout", "must not exceed healthCheck.interval (%d ms)", h.Interval.Milliseconds())
	}
	if h.FailureThreshold < 1 {
		v.add("healthCheck.failureThreshold", "must be at least 1")
	}
}

func (f Files) validate(v *checker) {
	if f.Dir == "" {
		v.add("files.dir", "must not be empty")
	}
	if f.MaxUploadBytes < 1 {
		v.add("files.maxUploadBytes", "must be at least 1")
	}
	if f.MaxOutputBytes < 1 {
		v.add("files.maxOutputBytes", "must be at least 1")
	}
	if f.OutputTimeout < Millis(time.Second) || f.OutputTimeout > Millis(24*time.Hour) {
		v.add("files.outputTimeout", "must be from 1000 to 86400000 ms")
	}
}

func (s Scheduler) validate(v *checker) {
	if s.TaskTimeout < Millis(time.Second) {
		v.add("scheduler.taskTimeout", "must be at least 1000 ms")
	}
	if s.MaxAttempts < 1 {
		v.add("scheduler.maxAttempts", "must be at least 1")
	}
	if s.PriorityAging < Millis(time.Millisecond) {
		v.add("scheduler.priorityAging", "must be at least 1 ms")
	}
	if s.Placement != PlacementWarm && s.Placement != PlacementFIFO {
		v.add("scheduler.placement", `must be "warm" or "fifo"`)
	}
	if s.Prefetch != nil && (*s.Prefetch < 0 || *s.Prefetch > 8) {
		v.add("scheduler.prefetch", "must be from 0 to 8")
	}
	if s.InterruptGrace < Millis(time.Second) || s.InterruptGrace > Millis(time.Hour) {
		v.add("scheduler.interruptGrace", "must be from 1000 to 3600000 ms")
	}
	if s.WarmWindow < 0 || s.WarmWindow > Millis(24*time.Hour) {
		v.add("scheduler.warmWindow", "must be between 0 and 86400000 ms")
	}
}
