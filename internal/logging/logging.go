// Package logging builds the gateway's logger from the log section of the
// config (text or JSON lines, a minimum level), redacts what must never
// reach a log line (tokens, passwords, secrets, the password of a URL),
// logs each HTTP request with its route pattern, status, duration and task
// id, and routes the Redis client's own messages through the same logger.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// Formats and levels of the log section.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ParseLevel reads "debug", "info", "warn" or "error" ("" is info).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: want debug, info, warn or error", s)
}

// New returns a logger writing to w in format ("text", the default, or
// "json": one object per line) from level on, with secrets redacted.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: redact}
	switch strings.ToLower(format) {
	case "", FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q: want text or json", format)
}

// Redacted replaces a secret's value in log lines.
const Redacted = "<redacted>"

// secretKey matches the attribute keys whose values are secrets whatever
// they hold.
var secretKey = regexp.MustCompile(`(?i)(^|_)(token|secret|password|passwd|authorization|cookie|api_?key|credentials?)($|_)`)

// urlWithPassword finds URLs that carry a password (redis://:pw@host).
var urlWithPassword = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:[^\s/@]*@[^\s]*`)

// redact is the handlers' ReplaceAttr: the value of a secret-named key
// becomes Redacted, and a URL's password is masked wherever it appears in
// a string value (an error that quotes a Redis URL, say).
func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindGroup {
		return a
	}
	if secretKey.MatchString(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "@") {
			return slog.String(a.Key, RedactURLs(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			if s := err.Error(); strings.Contains(s, "@") {
				return slog.String(a.Key, RedactURLs(s))
			}
		}
	}
	return a
}

// RedactURLs masks the password of every URL in s.
func RedactURLs(s string) string {
	return urlWithPassword.ReplaceAllStringFunc(s, func(m string) string {
		if u, err := url.Parse(m); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return u.Redacted()
			}
		}
		scheme, rest, _ := strings.Cut(m, "://")
		_, host, _ := strings.Cut(rest, "@")
		return scheme + "://" + Redacted + "@" + host
	})
}

// Redis adapts a logger to the Redis client's logger interface
// (redis.SetLogger): its messages become warnings with component=redis, in
// the gateway's format, instead of unstructured lines on stderr.
type Redis struct{ Log *slog.Logger }

// Printf implements the Redis client's logging interface.
func (r Redis) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
	r.Log.WarnContext(ctx, "redis client", "component", "redis", "detail", msg)
}
