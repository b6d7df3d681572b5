// Package web serves the browser dashboard. Its assets are embedded in the
// binary, so it works offline and needs no build step: plain HTML, CSS and
// JavaScript ES modules under static/, talking to the public REST API and
// /ws only.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// csp allows the dashboard's own scripts and styles only; media may come
// from anywhere because output URLs carry the configured publicBaseUrl,
// which can be another origin (a CDN or a proxy).
const csp = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src * data: blob:; media-src * data: blob:; connect-src 'self' ws: wss:; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Handler serves the dashboard's files. Unknown paths without a file
// extension get index.html so client-side routes work on reload; a missing
// asset (a path with an extension) is a 404. Every answer carries an ETag
// (a hash of the embedded bytes) and "Cache-Control: no-cache", so browsers
// revalidate cheaply and never run a stale dashboard after an upgrade.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: " + err.Error()) // the embed directive guarantees static/
	}
	etags := hashFiles(sub)
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := trim(r.URL.Path)
		if _, ok := etags[name]; !ok {
			if path.Ext(name) != "" {
				http.Error(w, "404 page not found", http.StatusNotFound)
				return
			}
			name = "index.html"
			r.URL.Path = "/"
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etags[name])
		h.Set("Referrer-Policy", "same-origin")
		if name == "index.html" {
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Frame-Options", "DENY")
		}
		files.ServeHTTP(w, r)
	})
}

// trim maps a URL path to a name in the embedded tree.
func trim(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "index.html"
	}
	return p
}

// hashFiles returns a strong ETag for every embedded file.
func hashFiles(fsys fs.FS) map[string]string {
	out := map[string]string{}
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return out
}
