package staff

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/pizzajoint/mesh/gateway/edge"
)

//go:embed staffui
var staffUI embed.FS

// MountBoard serves the portal's static files under /staff/, with a policy that allows only this origin.
func MountBoard(mux *http.ServeMux) {
	sub, err := fs.Sub(staffUI, "staffui")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	files := http.StripPrefix("/staff/", http.FileServerFS(sub))
	mux.Handle("GET /staff/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		edge.SetPageHeaders(w.Header())
		files.ServeHTTP(w, r)
	}))
}
