// Package web serves the browser dashboard. Its assets are embedded in the
// binary, so it works offline and needs no build step.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files; unknown paths get index.html so
// client-side routes work on reload.
func Handler() http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := fs.Stat(sub, trim(r.URL.Path)); err != nil {
			r.URL.Path = "/"
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

func trim(p string) string {
	if p == "/" || p == "" {
		return "index.html"
	}
	return p[1:]
}
