// Package customer serves the customer's pages: the shop (menu and cart) at / and an order's tracking page at
// /track/{id}, from customerui/ (embedded). The pages call the gateway's public API; nothing here does.
package customer

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/order"
)

//go:embed customerui
var customerUI embed.FS

// AssetsPrefix is where the customer pages' scripts and styles are served.
const AssetsPrefix = "/app/"

// Mount serves the customer's pages: the menu and cart at exactly /, an order's tracking page at
// /track/{id}, and their static files under /app/. Anything else stays a JSON 404: notFound, the gateway's
// catch-all.
func Mount(mux *http.ServeMux, notFound http.HandlerFunc) {
	sub, err := fs.Sub(customerUI, "customerui")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	read := func(name string) []byte {
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			panic(err)
		}
		return b
	}
	shop, track := read("index.html"), read("track.html")
	mux.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveEmbedded(w, r, "index.html", shop)
	}))
	mux.Handle("GET /track/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only real order IDs get the page, so /track/anything is a 404 like any unknown path.
		if !order.ValidID(r.PathValue("id")) {
			notFound(w, r)
			return
		}
		serveEmbedded(w, r, "track.html", track)
	}))

	// Scripts and styles: only the files that exist, no directory listings and no index redirects.
	assets := map[string][]byte{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) == ".html" {
			return err
		}
		assets[p] = read(p)
		return nil
	})
	if err != nil {
		panic(err)
	}
	mux.Handle("GET "+AssetsPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, AssetsPrefix)
		b, ok := assets[name]
		if !ok {
			notFound(w, r)
			return
		}
		serveEmbedded(w, r, name, b)
	}))
}

// builtAt stands in for the embedded files' modification time (embed keeps none), so browsers can revalidate.
var builtAt = time.Now().UTC().Truncate(time.Second)

func serveEmbedded(w http.ResponseWriter, r *http.Request, name string, b []byte) {
	edge.SetPageHeaders(w.Header())
	http.ServeContent(w, r, name, builtAt, bytes.NewReader(b))
}
