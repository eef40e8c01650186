package gateway

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

//go:embed customerui
var customerUI embed.FS

// CustomerAssetsPrefix is where the customer pages' scripts and styles are served.
const CustomerAssetsPrefix = "/app/"

// mountCustomerUI serves the customer's pages: the menu and cart at exactly /, an order's tracking page at
// /track/{id}, and their static files under /app/. Anything else stays a JSON 404 (the catch-all).
func mountCustomerUI(mux *http.ServeMux) {
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
	mux.Handle("GET "+CustomerAssetsPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, CustomerAssetsPrefix)
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
	setPageHeaders(w.Header())
	http.ServeContent(w, r, name, builtAt, bytes.NewReader(b))
}

// setPageHeaders is the policy of every page the gateway serves (customer and staff): scripts, styles and
// connections to this origin only, no inline code, no framing, and no Referer that could carry an order ID.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

func notFound(w http.ResponseWriter, r *http.Request) {
	EncodeError(r.Context(), &httpjson.RequestError{Status: http.StatusNotFound, Msg: "no such endpoint"}, w)
}
