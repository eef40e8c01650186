package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The Consul UI shows the mesh to an operator who logs in with the read-only token `make consul-ui-token`
// prints: the services with their sidecars and health, and the intentions. Without the token it shows none of
// it. Screenshots go to artifacts/.
func TestConsulUIShowsTheMesh(t *testing.T) {
	token, err := stack.Meshctl("token", "consul-ui")
	if err != nil {
		t.Fatal(err)
	}
	remember(token)
	ctx := newBrowser(t, 2*time.Minute)
	step := func(name string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		doStep(t, ctx, name, timeout, actions...)
	}
	ui := stack.ConsulHTTPS + "/ui/dc1"
	text := func() string { return runJS[string](t, ctx, `document.body.innerText`) }
	shot := func(name string) {
		t.Helper()
		path := filepath.Join(stack.Root, "artifacts", name)
		if err := saveScreenshot(ctx, path); err != nil {
			t.Errorf("screenshot: %v", err)
		} else {
			t.Logf("screenshot: %s", path)
		}
	}

	step("open the services page without a token", 30*time.Second,
		chromedp.Navigate(ui+"/services"), chromedp.WaitReady(chromedp.CSS("body")))
	time.Sleep(2 * time.Second) // the UI asks the API for services after the page loads
	eventually(t, 20*time.Second, func() error {
		page := strings.ToLower(text())
		if !strings.Contains(page, "log in") { // the page loaded, and asks for a token
			return fmt.Errorf("the services page without a token does not offer to log in:\n%.500s", page)
		}
		return nil
	})
	if page := text(); strings.Contains(page, "in service mesh with proxy") || strings.Contains(page, "2 instances") {
		t.Errorf("without a token the UI lists the mesh's services:\n%.500s", page)
	}

	// The UI keeps the token it logs in with in localStorage (what its login form does); the token itself was
	// leased from Vault for this test.
	step("log in with the read-only token", 10*time.Second,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem("consul:token", JSON.stringify({SecretID: %q}))`, token)))

	// page opens a UI page and waits until its text holds every want (case-insensitive), then screenshots it.
	page := func(path, screenshot string, wants ...string) {
		t.Helper()
		step("open "+path, 30*time.Second, chromedp.Navigate(ui+path), chromedp.WaitReady(chromedp.CSS("body")))
		eventually(t, 30*time.Second, func() error {
			got := strings.ToLower(text())
			for _, want := range wants {
				if !strings.Contains(got, strings.ToLower(want)) {
					return fmt.Errorf("%s lacks %q:\n%.800s", path, want, got)
				}
			}
			return nil
		})
		shot(screenshot)
	}
	page("/services", "consul-ui-services.png", "gateway", "order", "in service mesh with proxy")
	page("/services/order/instances", "consul-ui-order-instances.png", "order-1", "order-2", "in service mesh with proxy")
	// Both intentions: gateway → order allow, and the default * → * deny.
	page("/intentions", "consul-ui-intentions.png", "gateway", "allow", "all services (*)", "deny")

}
