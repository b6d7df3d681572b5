package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/workflow"
)

// Limits that hold whatever the config says.
const (
	// MinBodyBytes is the floor of server.maxBodyBytes (64 KiB): no setting
	// can make the API refuse every JSON body.
	MinBodyBytes = 64 << 10
	// MaxInstances bounds the instances (ports) of all servers together.
	MaxInstances = 1024
	// MinPasswordBytes and MaxPasswordBytes bound a password
	// (auth.adminPassword, and those hashed by "comfyfleet hash-password"):
	// bcrypt ignores bytes past 72.
	MinPasswordBytes = 8
	MaxPasswordBytes = 72
)

// SecretSetting reports whether setting key to value puts a secret in a
// command line, where every local user can read it (ps, /proc/<pid>/cmdline):
// auth.secret, auth.adminPassword, and a store.url with a password. env is
// the environment variable to use instead.
func SecretSetting(key, value string) (env string, secret bool) {
	switch {
	case strings.EqualFold(key, "auth.secret"):
		return EnvVar("auth.secret"), true
	case strings.EqualFold(key, "auth.adminPassword"):
		return envAdminPassword, true
	case strings.EqualFold(key, "store.url"):
		u, err := url.Parse(value)
		if err != nil {
			return EnvVar("store.url"), true // unparsable: it may hold anything
		}
		_, hasPassword := u.User.Password()
		return EnvVar("store.url"), hasPassword
	}
	return "", false
}

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
	c.Limits.validate(&v)
	c.Webhooks.validate(&v)
	c.Retention.validate(&v)
	if c.Metrics.Listen != "" {
		validateListen(&v, "metrics.listen", c.Metrics.Listen)
	} else if c.Metrics.Pprof {
		v.add("metrics.pprof", "needs metrics.listen: the profiler is served on the metrics listener only")
	}
	c.Log.validate(&v)
	return errors.Join(v.errs...)
}

func (l Log) validate(v *checker) {
	if l.Format != LogText && l.Format != LogJSON {
		v.add("log.format", `must be "text" or "json"`)
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", `must be "debug", "info", "warn" or "error"`)
	}
}

func (w Webhooks) validate(v *checker) {
	v.millisRange("webhooks.timeout", w.Timeout, time.Second, 2*time.Minute)
	v.durationRange("webhooks.retryFor", w.RetryFor, time.Second, 30*24*time.Hour)
	minOK := v.millisRange("webhooks.minBackoff", w.MinBackoff, 10*time.Millisecond, time.Hour)
	if v.millisRange("webhooks.maxBackoff", w.MaxBackoff, 10*time.Millisecond, 24*time.Hour) && minOK && w.MaxBackoff < w.MinBackoff {
		v.add("webhooks.maxBackoff", "must be at least webhooks.minBackoff")
	}
	v.intRange("webhooks.workers", int64(w.Workers), 1, 1024, "")
}

// Bounds of the retention ages: a task or file is kept at least an hour
// (clients read a task's result after it ends), at most ten years.
const (
	minRetention = time.Hour
	maxRetention = 10 * 365 * 24 * time.Hour
)

func (r Retention) validate(v *checker) {
	for _, age := range []struct {
		field string
		d     Duration
	}{{"retention.tasks", r.Tasks}, {"retention.files", r.Files}} {
		if age.d != 0 && (time.Duration(age.d) < minRetention || time.Duration(age.d) > maxRetention) {
			v.add(age.field, "must be 0 (keep for good) or between %s and %s", Duration(minRetention), Duration(maxRetention))
		}
	}
	v.millisRange("retention.interval", r.Interval, time.Second, 24*time.Hour)
	v.intRange("retention.batch", int64(r.Batch), 1, 1000, "")
}

func (h HTTP) validate(v *checker) {
	validateListen(v, "server.listen", h.Listen)
	if h.PublicBaseURL != "" {
		u, err := url.Parse(h.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			v.add("server.publicBaseUrl", "must be an http:// or https:// URL without query, like https://fleet.example.com")
		}
	}
	v.intRange("server.maxBodyBytes", h.MaxBodyBytes, MinBodyBytes, 1<<30, " bytes")
	v.durationRange("server.readHeaderTimeout", h.ReadHeaderTimeout, time.Second, 5*time.Minute)
	v.durationRange("server.readTimeout", h.ReadTimeout, time.Second, time.Hour)
	v.durationRange("server.writeTimeout", h.WriteTimeout, time.Second, time.Hour)
	v.durationRange("server.idleTimeout", h.IdleTimeout, time.Second, time.Hour)
	v.durationRange("server.transferTimeout", h.TransferTimeout, time.Minute, 24*time.Hour)
	v.durationRange("server.shutdownGrace", h.ShutdownGrace, time.Second, 24*time.Hour)
	for _, pfx := range h.TrustedProxies {
		if pfx.Bits() == 0 {
			v.add("server.trustedProxies", "%s trusts every address: any client could choose the address it is limited by; list your proxies", pfx)
		}
	}
	if v.intRange("server.wsMaxConns", int64(h.WSMaxConns), 1, 1000000, "") {
		v.intRange("server.wsMaxConnsPerUser", int64(h.WSMaxConnsPerUser), 1, int64(h.WSMaxConns), " (server.wsMaxConns)")
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

// placeholder marks the values of the shipped deployment examples
// (deploy/) that must be replaced: a gateway started with one would sign
// tokens with a secret anyone can read.
const placeholder = "replace-with"

func (a Auth) validate(v *checker, demo bool) {
	v.durationRange("auth.tokenTtl", a.TokenTTL, time.Minute, 365*24*time.Hour)
	if a.Secret != "" && len(a.Secret) < 32 {
		v.add("auth.secret", "must be at least 32 characters (HS256 needs a 256-bit key)")
	}
	if strings.Contains(a.Secret, placeholder) {
		v.add("auth.secret", "is the shipped example's placeholder: set a secret of your own (openssl rand -hex 32)")
	}
	if strings.Contains(a.AdminPassword, placeholder) {
		v.add("auth.adminPassword", "is the shipped example's placeholder: set a password of your own")
	}
	v.intRange("auth.loginRateLimit", int64(a.LoginRateLimit), 1, 10000, "")
	if a.AdminPassword != "" {
		switch {
		case len(a.Users) > 0:
			v.add("auth.adminPassword", "is only used when auth.users is empty")
		case demo:
			v.add("auth.adminPassword", "cannot be combined with demo mode, whose admin password is admin123")
		case len(a.AdminPassword) < MinPasswordBytes || len(a.AdminPassword) > MaxPasswordBytes:
			v.add("auth.adminPassword", "must be %d..%d bytes long", MinPasswordBytes, MaxPasswordBytes)
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
	v.millisRange("store.leaseTtl", s.LeaseTTL, 3*time.Second, 5*time.Minute)
}

func validateServers(v *checker, servers []Server) {
	total := 0
	for _, s := range servers {
		total += len(s.Ports)
	}
	if total > MaxInstances {
		v.add("servers", "list %d instances (ports) in all; at most %d", total, MaxInstances)
		return
	}
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
		if s.OutputDir != "" && !filepath.IsAbs(s.OutputDir) {
			v.add(field+".outputDir", "must be an absolute path, like /mnt/comfyui-{port}/output")
		}
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
	intervalOK := v.millisRange("healthCheck.interval", h.Interval, 100*time.Millisecond, time.Hour)
	if v.millisRange("healthCheck.timeout", h.Timeout, 100*time.Millisecond, time.Hour) && intervalOK && h.Timeout > h.Interval {
		v.add("healthCheck.timeout", "must not exceed healthCheck.interval (%d ms)", h.Interval.Milliseconds())
	}
	v.intRange("healthCheck.failureThreshold", int64(h.FailureThreshold), 1, 100, "")
	if h.DrainAfterFailures != DrainOff {
		v.intRange("healthCheck.drainAfterFailures", int64(h.DrainAfterFailures), 1, 1000, " (or -1: off)")
	}
	v.millisRange("healthCheck.drainCooldown", h.DrainCooldown, time.Second, 24*time.Hour)
	v.millisRange("healthCheck.probeTimeout", h.ProbeTimeout, time.Second, time.Hour)
	if h.ProbeWorkflow != nil {
		if _, err := h.ProbeJSON(); err != nil {
			v.add("healthCheck.probeWorkflow", "%v", err)
		}
	}
}

// ProbeJSON is ProbeWorkflow encoded, checked to be an API-format
// workflow; nil when none is set.
func (h HealthCheck) ProbeJSON() ([]byte, error) {
	if h.ProbeWorkflow == nil {
		return nil, nil
	}
	b, err := json.Marshal(h.ProbeWorkflow)
	if err != nil {
		return nil, fmt.Errorf("cannot be encoded as JSON: %v", err)
	}
	if _, err := workflow.Parse(b); err != nil {
		return nil, err
	}
	return b, nil
}

func (f Files) validate(v *checker) {
	if f.Dir == "" {
		v.add("files.dir", "must not be empty")
	}
	v.intRange("files.maxUploadBytes", f.MaxUploadBytes, 1, 1<<40, " bytes")
	v.intRange("files.maxOutputBytes", f.MaxOutputBytes, 1, 1<<40, " bytes")
	v.millisRange("files.outputTimeout", f.OutputTimeout, time.Second, 24*time.Hour)
	switch f.Driver {
	case FilesDisk:
	case FilesS3:
		f.S3.validate(v)
	default:
		v.add("files.driver", "must be %q or %q", FilesDisk, FilesS3)
	}
	if f.S3.Serve != ServeProxy && f.S3.Serve != ServeRedirect {
		v.add("files.s3.serve", "must be %q or %q", ServeProxy, ServeRedirect)
	}
	v.durationRange("files.s3.linkTtl", f.S3.LinkTTL, time.Minute, 7*24*time.Hour)
}

// validate checks the settings the s3 driver needs.
func (s S3) validate(v *checker) {
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.User != nil {
		v.add("files.s3.endpoint", "must be an http:// or https:// URL without path, query or credentials, like https://s3.eu-west-1.amazonaws.com")
	}
	if !validBucket(s.Bucket) {
		v.add("files.s3.bucket", "must be an S3 bucket name: 3..63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit")
	}
	if !validKeyPrefix(s.Prefix) {
		v.add("files.s3.prefix", "must be at most 512 ASCII letters, digits, '/', '-', '_' and '.', without a leading '/' or \"..\"")
	}
	if s.Region == "" || len(s.Region) > 64 || strings.ContainsFunc(s.Region, func(r rune) bool {
		return !(r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
	}) {
		v.add("files.s3.region", "must be 1..64 letters, digits, '-' or '_', like us-east-1")
	}
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 || strings.Contains(b, "..") {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
		if (i == 0 || i == len(b)-1) && !alnum {
			return false
		}
		if !alnum && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func validKeyPrefix(p string) bool {
	if len(p) > 512 || strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("/-_.", c) >= 0) {
			return false
		}
	}
	return true
}

func (s Scheduler) validate(v *checker) {
	maxOK := v.millisRange("scheduler.maxTaskTimeout", s.MaxTaskTimeout, time.Second, 30*24*time.Hour)
	if v.millisRange("scheduler.taskTimeout", s.TaskTimeout, time.Second, 30*24*time.Hour) && maxOK &&
		s.TaskTimeout > s.MaxTaskTimeout {
		v.add("scheduler.taskTimeout", "must not exceed scheduler.maxTaskTimeout (%d ms)", s.MaxTaskTimeout.Milliseconds())
	}
	v.intRange("scheduler.maxAttempts", int64(s.MaxAttempts), 1, 100, "")
	v.millisRange("scheduler.priorityAging", s.PriorityAging, time.Millisecond, 10*365*24*time.Hour)
	if s.Placement != PlacementWarm && s.Placement != PlacementFIFO {
		v.add("scheduler.placement", `must be "warm" or "fifo"`)
	}
	if s.Prefetch != nil {
		v.intRange("scheduler.prefetch", int64(*s.Prefetch), 0, 8, "")
	}
	v.millisRange("scheduler.interruptGrace", s.InterruptGrace, time.Second, time.Hour)
	v.millisRange("scheduler.warmWindow", s.WarmWindow, 0, 24*time.Hour)
}

// intRange checks lo <= n <= hi; unit follows the numbers in the message.
// It reports whether n is in range.
func (v *checker) intRange(field string, n, lo, hi int64, unit string) bool {
	switch {
	case n < lo:
		v.add(field, "must be at least %d%s", lo, unit)
	case n > hi:
		v.add(field, "must be at most %d%s", hi, unit)
	default:
		return true
	}
	return false
}

// millisRange checks lo <= m <= hi, in milliseconds.
func (v *checker) millisRange(field string, m Millis, lo, hi time.Duration) bool {
	switch {
	case time.Duration(m) < lo:
		v.add(field, "must be at least %d ms", lo.Milliseconds())
	case time.Duration(m) > hi:
		v.add(field, "must be at most %d ms", hi.Milliseconds())
	default:
		return true
	}
	return false
}

// durationRange checks lo <= d <= hi, as duration strings.
func (v *checker) durationRange(field string, d Duration, lo, hi time.Duration) bool {
	switch {
	case time.Duration(d) < lo:
		v.add(field, "must be at least %s", Duration(lo))
	case time.Duration(d) > hi:
		v.add(field, "must be at most %s", Duration(hi))
	default:
		return true
	}
	return false
}
