package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// openAPI is the one description of the API's routes; a test holds routes() to it.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write(openAPI)
}

// portalFiles are the portal's page, style and script: no build step, no outside assets.
//
//go:embed portal
var portalFiles embed.FS

// portalPolicy lets the page load its own files only, talk to its own origin only and be
// framed by no one.
const portalPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

func portalHandler() http.Handler {
	sub, err := fs.Sub(portalFiles, "portal")
	if err != nil {
		panic(err) // the embedded tree always has the folder
	}
	files := http.StripPrefix("/portal/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", portalPolicy)
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
