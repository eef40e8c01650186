package edge

import "net/http"

// SetPageHeaders is the policy of every page the gateway serves (customer and staff): scripts, styles and
// connections to this origin only, no inline code, no framing, and no Referer that could carry an order ID.
func SetPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}
