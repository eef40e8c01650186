package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which `make deps` installs (scripts/tools.sh ensure chromium).
const chromiumPath = "/usr/bin/chromium"

// TestStaffBoardInBrowser drives the staff portal in a real browser: sign in with a token, see a new order
// appear live (no reload) through the event stream, and accept it with the card's button.
func TestStaffBoardInBrowser(t *testing.T) {
	token := remember(stack.StaffToken(t, "browser-test"))
	ctx := newBrowser(t, 2*time.Minute)

	console := watchConsole(t, ctx)
	shot := filepath.Join(stack.Root, "artifacts", "staff-board.png")
	defer func() {
		if t.Failed() { // what the page showed is the quickest diagnosis
			path := strings.TrimSuffix(shot, ".png") + "-failed.png"
			if err := saveScreenshot(ctx, path); err != nil {
				t.Logf("no screenshot of the failure: %v", err)
			} else {
				t.Logf("screenshot of the failure: %s", path)
			}
		}
	}()

	step := func(name string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		doStep(t, ctx, name, timeout, actions...)
	}

	step("open the portal", 30*time.Second,
		chromedp.Navigate(stack.GatewayURL+"/staff/"),
		chromedp.WaitVisible(chromedp.ID("token")))
	step("sign in", 15*time.Second,
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login-submit")),
		// aria-busy goes when every column has loaded; "live" when the event stream is open. Only then can
		// a new card prove the stream works rather than the first load.
		chromedp.WaitVisible(chromedp.CSS(`#board-view:not([aria-busy])`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-status="CREATED"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)))
	// A marker that a reload would wipe: the card must come without one.
	step("mark the page", 5*time.Second, chromedp.Evaluate[chromedp.Void](`window.noReloadMarker = 1`))

	status, order, err := placeOrder(t, fmt.Sprintf("browser-%d", time.Now().UnixNano()), orderBody("Browser Test"))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("place an order: %d %v", status, err)
	}
	placedAt := time.Now()
	card := fmt.Sprintf(`[data-order-id=%q]`, order.ID)
	step("the new order appears in CREATED", 5*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`[data-status="CREATED"] `+card)))
	t.Logf("card for %s shown %v after the 201", order.ID, time.Since(placedAt).Round(time.Millisecond))
	if marker := runJS[int](t, ctx, `window.noReloadMarker || 0`); marker != 1 {
		t.Fatal("the page reloaded to show the new order; it must arrive over the event stream")
	}

	step("accept it", 10*time.Second,
		chromedp.Click(chromedp.CSS(`[data-status="CREATED"] `+card+` [data-action="ACCEPTED"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-status="ACCEPTED"] `+card)))
	if n := runJS[int](t, ctx, fmt.Sprintf(`document.querySelectorAll(%q).length`, card)); n != 1 {
		t.Fatalf("%d cards for order %s after the move, want 1", n, order.ID)
	}
	if got := staffOrderStatus(t, token, order.ID); got != "ACCEPTED" {
		t.Fatalf("the API says order %s is %s after the click, want ACCEPTED", order.ID, got)
	}

	step("show the accepted card", 5*time.Second, chromedp.ScrollIntoView(chromedp.CSS(`[data-status="ACCEPTED"] `+card)))
	if err := saveScreenshot(ctx, shot); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screenshot: %s", shot)
	}
	console.check(t)
}

// newBrowser starts a headless Chromium with a fresh profile for the test, and returns its first tab. The
// browser trusts only the certificates of the stack's gateway and Consul UI, and closes after timeout or when
// the test ends.
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		// A missing browser fails rather than skips: a skipped UI test would pass CI with the page untested.
		t.Fatalf("the browser tests need Chromium at %s (make deps installs it): %v", chromiumPath, err)
	}
	var pins []string
	for _, u := range []string{stack.GatewayURL, stack.ConsulHTTPS} {
		pin, err := keyPin(u)
		if err != nil {
			t.Fatal(err)
		}
		pins = append(pins, pin)
	}
	pin := strings.Join(pins, ",")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()), // a fresh profile: no cookie, storage or cache from an earlier run
		chromedp.Headless,
		chromedp.NoSandbox, // runs as root in CI, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1366, 900),
		// Chromium has no flag to add a CA, and its own store would need NSS tools. Rather than
		// --ignore-certificate-errors (any certificate at all), the test checks the gateway's certificate
		// against the stack's dev CA in Go (keyPin) and lets Chromium accept only that public key.
		chromedp.Flag("ignore-certificate-errors-spki-list", pin),
	)
	t.Cleanup(cancelAlloc)
	// One bound for the whole test, browser included (it closes at the deadline); each step has a shorter one.
	bounded, cancel := context.WithTimeout(alloc, timeout)
	t.Cleanup(cancel)
	ctx, cancelBrowser := chromedp.NewContext(bounded)
	t.Cleanup(cancelBrowser)
	// Start the browser under this context now: chromedp ties the browser to the context of its first run, and
	// a step's shorter-lived context would take the browser down with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// doStep runs actions in the tab of ctx within timeout, and fails the test with the step's name if they fail.
func doStep(t *testing.T, ctx context.Context, name string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s (within %v): %v", name, timeout, err)
	}
}

// keyPin verifies the certificate served at an https:// URL against the stack's dev CA, for the host the browser
// will use, and returns the base64 SHA-256 of its public key, the form --ignore-certificate-errors-spki-list takes.
func keyPin(url string) (string, error) {
	ca, err := os.ReadFile(filepath.Join(stack.Dir, "certs", "ca.pem"))
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return "", fmt.Errorf("no CA certificate in %s/certs/ca.pem", stack.Dir)
	}
	// Verified for the host the browser will use, as the browser would (the dialer takes the name from addr).
	addr := strings.TrimPrefix(url, "https://")
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("TLS to %s with the dev CA: %w", url, err)
	}
	defer conn.Close()
	leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// staffOrderStatus reads an order through the staff API with the token as a bearer credential.
func staffOrderStatus(t *testing.T, token, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", stack.GatewayURL+"/staff/api/orders/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := stack.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /staff/api/orders/%s: %d %v", id, resp.StatusCode, err)
	}
	return o.Status
}

func runJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// saveScreenshot writes the whole page as a PNG (artifacts/ is git-ignored).
func saveScreenshot(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 means PNG
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// consoleLog collects the page's console messages in the background until stop.
type consoleLog struct {
	cancel context.CancelFunc
	done   chan struct{}
	msgs   []chromedp.ConsoleMessage
}

func watchConsole(t *testing.T, ctx context.Context) *consoleLog {
	ctx, cancel := context.WithCancel(ctx)
	c := &consoleLog{cancel: cancel, done: make(chan struct{})}
	msgs := chromedp.Console(ctx) // subscribes now, so nothing the page writes later is missed
	go func() {
		defer close(c.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.msgs = append(c.msgs, m)
		}
	}()
	t.Cleanup(cancel)
	return c
}

func (c *consoleLog) stop() []chromedp.ConsoleMessage {
	c.cancel()
	<-c.done
	return c.msgs
}

// check stops watching and fails the test on customer data in the console (the pages show it, and must never
// write it there), on a script error and on a policy (CSP) violation. Failed-resource lines (the 401 of the
// first session check, a favicon) are the browser's, not ours.
func (c *consoleLog) check(t *testing.T) {
	t.Helper()
	for _, m := range c.stop() {
		for _, pii := range []string{testPhone, testAddress} {
			if strings.Contains(m.Text, pii) {
				t.Errorf("the console holds customer data: %s", m.Type)
			}
		}
		if m.IsException() || m.Source == "security" {
			t.Errorf("browser console: %s", m)
		}
	}
}
