package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pizzajoint/mesh/order"
)

// The customer's page in a real browser against the whole stack: ordering from the menu, following the order
// live, never ordering twice, field errors where they belong, keyboard-only use, and a phone-sized screen.
// Screenshots go to artifacts/ (git-ignored).
func TestCustomerPage(t *testing.T) {
	t.Run("order two pizzas and follow them to the door", testOrderAndFollow)
	t.Run("a double click orders once", testDoubleClickOrdersOnce)
	t.Run("a retry after a lost answer orders once", testRetryAfterLostAnswer)
	t.Run("a bad phone number is explained at the phone field", testBadPhone)
	t.Run("keyboard only", testKeyboardOnly)
	t.Run("another browser finds the order with its token", testTrackingWithTypedToken)
	t.Run("phone screen", testPhoneScreen)
	t.Run("the tracking page reconnects across a gateway restart", testTrackingSurvivesGatewayRestart)
}

// The cart every test orders unless it says otherwise: two different pizzas.
var twoPizzas = []storedItem{{"margherita", "M", 1}, {"diavola", "L", 1}}

type storedItem struct {
	Pizza, Size string
	Quantity    int
}

// customerTab opens a fresh browser for one test, and on failure leaves a screenshot of what the page showed.
// At the end it fails the test on a script error, a policy (CSP) violation, or customer data in the console.
func customerTab(t *testing.T, name string) context.Context {
	t.Helper()
	ctx := newBrowser(t, 2*time.Minute)
	console := watchConsole(t, ctx)
	t.Cleanup(func() { // runs before the browser closes: newBrowser registered its cleanups first
		if t.Failed() {
			shot := filepath.Join(stack.Root, "artifacts", "customer-"+name+"-failed.png")
			if err := saveScreenshot(ctx, shot); err != nil {
				t.Logf("no screenshot of the failure: %v", err)
			} else {
				t.Logf("screenshot of the failure: %s", shot)
			}
		}
		console.check(t)
	})
	return ctx
}

// openShop loads / and waits for the menu.
func openShop(t *testing.T, ctx context.Context) {
	t.Helper()
	doStep(t, ctx, "open the shop", 30*time.Second,
		chromedp.Navigate(stack.GatewayURL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#menu:not([aria-busy]) button[data-pizza="margherita"][data-size="M"]`)))
}

func addButton(it storedItem) string {
	return fmt.Sprintf(`#menu button[data-pizza=%q][data-size=%q]`, it.Pizza, it.Size)
}

// fillCart adds the items with the menu's buttons and types the delivery details.
func fillCart(t *testing.T, ctx context.Context, name, phone string, items []storedItem) {
	t.Helper()
	var actions []chromedp.Action[chromedp.Void]
	for _, it := range items {
		for range it.Quantity {
			actions = append(actions, chromedp.Click(chromedp.CSS(addButton(it))))
		}
	}
	actions = append(actions,
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#cart-lines [data-index="%d"]`, len(items)-1))),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("phone"), phone),
		chromedp.SendKeys(chromedp.ID("address"), testAddress))
	doStep(t, ctx, "fill the cart", 15*time.Second, actions...)
}

// until waits for a JavaScript expression to be true on the page.
func until(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr)(ctx, t)
		return chromedp.Void{}, err
	}
}

const reachedStep = `#steps [data-status=%q][data-reached]`

// waitTracking waits for the tracking page to show the order's CREATED step and returns the order's ID.
func waitTracking(t *testing.T, ctx context.Context) string {
	t.Helper()
	doStep(t, ctx, "the tracking page shows CREATED", 20*time.Second,
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(reachedStep, "CREATED"))))
	loc := runJS[string](t, ctx, `location.href`)
	if !strings.HasPrefix(loc, stack.GatewayURL+"/track/") || strings.ContainsAny(loc, "?#") {
		t.Fatalf("tracking page at %q; want /track/{id} with no query or fragment (no token in the URL)", loc)
	}
	return path.Base(loc)
}

// ordersNamed are the stored orders of a customer name (each test uses its own).
func ordersNamed(t *testing.T, name string) []string {
	t.Helper()
	rows, err := stack.Observer.Query(`SELECT id FROM orders WHERE customer_name = ? ORDER BY id`, name)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// exactlyOneOrder checks that name has one stored order, with the given ID when id is not empty. A moment of
// grace first lets a second request, if the page sent one, land.
func exactlyOneOrder(t *testing.T, name, id string) {
	t.Helper()
	time.Sleep(time.Second)
	ids := ordersNamed(t, name)
	if len(ids) != 1 || (id != "" && ids[0] != id) {
		t.Fatalf("orders stored for %q: %v; want exactly one (%s)", name, ids, id)
	}
}

func priceOf(pizza, size string) int64 {
	p, err := order.DefaultMenu.Price(pizza, order.Size(size))
	if err != nil {
		panic(fmt.Sprintf("%s %s is not on the menu", pizza, size))
	}
	return p
}

func euros(cents int64) string { return fmt.Sprintf("€%d.%02d", cents/100, cents%100) }

func testOrderAndFollow(t *testing.T) {
	ctx := customerTab(t, "order")
	const name = "Page Follower"
	openShop(t, ctx)
	if err := saveScreenshot(ctx, filepath.Join(stack.Root, "artifacts", "customer-menu.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	fillCart(t, ctx, name, testPhone, twoPizzas)
	var want int64
	for _, it := range twoPizzas {
		want += priceOf(it.Pizza, it.Size) * int64(it.Quantity)
	}
	if got := runJS[string](t, ctx, `document.getElementById('total').textContent`); got != euros(want) {
		t.Errorf("the cart's total reads %q before ordering; want %s from the menu's prices", got, euros(want))
	}
	if err := saveScreenshot(ctx, filepath.Join(stack.Root, "artifacts", "customer-cart.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}

	doStep(t, ctx, "order", 5*time.Second, chromedp.Click(chromedp.ID("place")))
	id := waitTracking(t, ctx)

	// In MySQL with the items and the total the page showed.
	var status string
	var total int64
	if err := stack.Observer.QueryRow(`SELECT status, total_cents FROM orders WHERE id = ? AND customer_name = ?`, id, name).
		Scan(&status, &total); err != nil {
		t.Fatalf("order %s of %q in MySQL: %v", id, name, err)
	}
	if status != "CREATED" || total != want {
		t.Errorf("stored order %s: %s, total %d; want CREATED, %d", id, status, total, want)
	}
	if got := storedItems(t, id); !reflect.DeepEqual(got, twoPizzas) {
		t.Errorf("stored items %+v; want %+v", got, twoPizzas)
	}
	exactlyOneOrder(t, name, id)
	if got := runJS[string](t, ctx, `document.getElementById('order-total').textContent`); got != euros(want) {
		t.Errorf("the tracking page's total reads %q; want the 201's %s", got, euros(want))
	}
	if !runJS[bool](t, ctx, fmt.Sprintf(`!!localStorage.getItem('pizzajoint.tracking.' + %q)`, id)) {
		t.Error("the tracking token is not kept in localStorage under the order's ID")
	}

	// The kitchen moves the order along; every step arrives over the stream, without a reload, in a row that
	// was there from the start (nothing on the page moves).
	doStep(t, ctx, "the stream is live", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
		chromedp.Evaluate[chromedp.Void](`window.noReloadMarker = 1`))
	layout := `JSON.stringify(Array.from(document.querySelectorAll('#steps li, .summary')).map(e => e.getBoundingClientRect().top))`
	before := runJS[string](t, ctx, layout)
	for _, s := range []string{"ACCEPTED", "BAKING", "OUT_FOR_DELIVERY", "DELIVERED"} {
		advance(t, id, s)
		moved := time.Now()
		doStep(t, ctx, s+" appears", 10*time.Second, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(reachedStep, s))))
		t.Logf("%s shown %v after the staff's change", s, time.Since(moved).Round(time.Millisecond))
		if got := runJS[string](t, ctx, fmt.Sprintf(`document.querySelector('#steps [data-status=%q] time').textContent`, s)); got == "" {
			t.Errorf("%s shows no time", s)
		}
		if got := runJS[string](t, ctx, layout); got != before {
			t.Errorf("the page moved when the order reached %s: rows at %s, were %s", s, got, before)
		}
		if s == "BAKING" {
			if err := saveScreenshot(ctx, filepath.Join(stack.Root, "artifacts", "customer-tracking.png")); err != nil {
				t.Errorf("screenshot: %v", err)
			}
		}
	}
	if runJS[int](t, ctx, `window.noReloadMarker || 0`) != 1 {
		t.Fatal("the page reloaded; the steps must arrive over the event stream")
	}
	times := `JSON.stringify(Array.from(document.querySelectorAll('#steps [data-reached] time')).map(e => e.dateTime))`
	steps := runJS[string](t, ctx, times)
	if n := runJS[int](t, ctx, `document.querySelectorAll('#steps [data-reached]').length`); n != 5 || strings.Contains(steps, `""`) {
		t.Errorf("%d steps reached with times %s; want the 5 of a delivered order, each with its time", n, steps)
	}
	if st := runJS[string](t, ctx, `document.getElementById('conn').dataset.state`); st != "done" {
		t.Errorf("connection state %q after delivery, want done", st)
	}

	// A customer who comes back later sees the whole story again, from the stored token and the stream's history.
	doStep(t, ctx, "reload", 20*time.Second,
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(reachedStep, "DELIVERED"))),
		until(`document.querySelectorAll('#steps [data-reached] time[datetime]').length === 5`))
	if again := runJS[string](t, ctx, times); again != steps {
		t.Errorf("after a reload the steps' times are %s; were %s", again, steps)
	}
}

func storedItems(t *testing.T, id string) []storedItem {
	t.Helper()
	rows, err := stack.Observer.Query(`SELECT pizza, size, quantity FROM order_items WHERE order_id = ? ORDER BY line`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var items []storedItem
	for rows.Next() {
		var it storedItem
		if err := rows.Scan(&it.Pizza, &it.Size, &it.Quantity); err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	return items
}

// The customer double-clicks Order while the network is slow: the first request is held in the browser until
// both clicks are in, so the page cannot be saved by a quick answer, only by not ordering twice.
func testDoubleClickOrdersOnce(t *testing.T) {
	ctx := customerTab(t, "double-click")
	const name = "Double Clicker"
	openShop(t, ctx)
	fillCart(t, ctx, name, testPhone, twoPizzas)
	paused := interceptOrders(t, ctx, fetch.RequestStageRequest)

	// A person's double click is two presses, the second with a click count of 2. (chromedp.DoubleClick sends
	// one press with a count of 2: a single click for the page, which would prove nothing.)
	doStep(t, ctx, "show the button", 5*time.Second, chromedp.ScrollIntoView(chromedp.ID("place")))
	at := runJS[[]float64](t, ctx, `(r => [r.x + r.width / 2, r.y + r.height / 2])(document.getElementById('place').getBoundingClientRect())`)
	doStep(t, ctx, "double-click Order", 5*time.Second,
		chromedp.MouseClickXY(at[0], at[1]), chromedp.MouseClickXY(at[0], at[1], chromedp.ClickCount(2)))
	var held []*fetch.EventRequestPaused
	// The first request within seconds, then a second for a second request, if the page makes one.
	for wait := time.After(10 * time.Second); ; {
		select {
		case p := <-paused:
			held = append(held, p)
			wait = time.After(time.Second)
			continue
		case <-wait:
		}
		break
	}
	if len(held) == 0 {
		t.Fatal("the double click sent no order")
	}
	for _, p := range held {
		if _, err := chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: p.RequestID}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chromedp.Call(ctx, fetch.Disable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	id := waitTracking(t, ctx)
	if len(held) != 1 {
		t.Errorf("the double click sent %d requests; want 1 (no second while the first is on its way)", len(held))
	}
	exactlyOneOrder(t, name, id)
}

// interceptOrders pauses the page's POST /pizza requests at stage (before sending them, or once the gateway
// has answered) and hands them over; the caller continues or fails each one.
func interceptOrders(t *testing.T, ctx context.Context, stage fetch.RequestStage) <-chan *fetch.EventRequestPaused {
	t.Helper()
	paused := make(chan *fetch.EventRequestPaused, 8)
	if err := chromedp.Listen(ctx, func(ev any) {
		if p, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case paused <- p:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: "*/pizza", RequestStage: stage},
	}}); err != nil {
		t.Fatal(err)
	}
	return paused
}

// The first POST /pizza reaches the gateway and makes the order, but its answer is lost (the browser sees a
// network error). Retrying from the page must get that same order back, not make a second one.
func testRetryAfterLostAnswer(t *testing.T) {
	ctx := customerTab(t, "retry")
	const name = "Lost Answer"
	openShop(t, ctx)
	fillCart(t, ctx, name, testPhone, twoPizzas)

	paused := interceptOrders(t, ctx, fetch.RequestStageResponse) // after the gateway has answered
	doStep(t, ctx, "order", 5*time.Second, chromedp.Click(chromedp.ID("place")))
	select {
	case p := <-paused:
		if p.Request.Method != http.MethodPost || p.ResponseStatusCode != http.StatusCreated {
			t.Fatalf("intercepted %s %s answered %d; want the order's POST answered 201", p.Request.Method, p.Request.URL, p.ResponseStatusCode)
		}
		if _, err := chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: p.RequestID, ErrorReason: network.ErrorReasonConnectionReset}); err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the order's POST never reached the interception")
	}
	if _, err := chromedp.Call(ctx, fetch.Disable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	doStep(t, ctx, "the page offers a safe retry", 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#form-status[data-kind="warn"]`)),
		until(`document.getElementById('place').textContent === 'Retry order'`))
	first := ordersNamed(t, name)
	if len(first) != 1 {
		t.Fatalf("orders stored after the lost answer: %v; want the one the first attempt made", first)
	}

	doStep(t, ctx, "retry", 5*time.Second, chromedp.Click(chromedp.ID("place")))
	id := waitTracking(t, ctx)
	doStep(t, ctx, "the page says the retry was safe", 5*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#placed-note[data-kind="replayed"]`)))
	exactlyOneOrder(t, name, first[0])
	if id != first[0] {
		t.Errorf("the retry shows order %s; the first attempt made %s", id, first[0])
	}
}

func testBadPhone(t *testing.T) {
	ctx := customerTab(t, "bad-phone")
	const name, phone = "Bad Phone", "call me maybe"
	// What the API says about this phone number, asked directly.
	body := strings.Replace(string(orderBody(name)), testPhone, phone, 1)
	status, _, apiErr := placeOrder(t, "", []byte(body))
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("the API took phone %q: %d %v", phone, status, apiErr)
	}
	msg := "must be 5 to 32 characters of digits, spaces, +, -, ( and )"
	if !strings.Contains(apiErr.Error(), `"field":"customer.phone"`) || !strings.Contains(apiErr.Error(), msg) {
		t.Fatalf("the API's answer changed: %v", apiErr)
	}

	openShop(t, ctx)
	fillCart(t, ctx, name, phone, twoPizzas)
	doStep(t, ctx, "order", 5*time.Second, chromedp.Click(chromedp.ID("place")))
	doStep(t, ctx, "the error shows at the phone field", 10*time.Second, chromedp.WaitVisible(chromedp.ID("phone-error")))
	if got := runJS[string](t, ctx, `document.getElementById('phone-error').textContent`); !strings.Contains(got, msg) {
		t.Errorf("next to the phone field: %q; want the API's message %q", got, msg)
	}
	checks := map[string]string{
		"the field is marked invalid":        `document.getElementById('phone').getAttribute('aria-invalid') === 'true'`,
		"the field is described by it":       `document.getElementById('phone').getAttribute('aria-describedby').split(' ').includes('phone-error')`,
		"the message is announced":           `document.getElementById('phone-error').getAttribute('role') === 'alert'`,
		"the focus is on the field":          `document.activeElement.id === 'phone'`,
		"the other fields show no error":     `document.getElementById('name-error').hidden && document.getElementById('address-error').hidden`,
		"the page stays on the shop":         `location.pathname === '/'`,
		"the phone field is next to its msg": `document.getElementById('phone').closest('.field').contains(document.getElementById('phone-error'))`,
	}
	for what, js := range checks {
		if !runJS[bool](t, ctx, js) {
			t.Errorf("%s: false", what)
		}
	}
	if ids := ordersNamed(t, name); len(ids) != 0 {
		t.Errorf("orders stored with a bad phone: %v", ids)
	}
}

// tabTo presses Tab until the focused element matches sel, as a keyboard user would.
func tabTo(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	is := fmt.Sprintf(`!!document.activeElement && document.activeElement.matches(%q)`, sel)
	for range 80 {
		if runJS[bool](t, ctx, is) {
			return
		}
		doStep(t, ctx, "Tab", 5*time.Second, chromedp.KeyEvent(kb.Tab))
	}
	t.Fatalf("Tab never reached %s", sel)
}

func testKeyboardOnly(t *testing.T) {
	ctx := customerTab(t, "keyboard")
	const name = "Keyboard Only"
	openShop(t, ctx)
	item := twoPizzas[0]
	tabTo(t, ctx, addButton(item))
	doStep(t, ctx, "Enter adds the pizza", 5*time.Second,
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#cart-lines [data-index="0"]`)))
	tabTo(t, ctx, "#name")
	doStep(t, ctx, "type the name", 5*time.Second, chromedp.KeyEvent(name))
	tabTo(t, ctx, "#phone")
	doStep(t, ctx, "type the phone", 5*time.Second, chromedp.KeyEvent(testPhone))
	tabTo(t, ctx, "#address")
	doStep(t, ctx, "type the address and press Enter", 5*time.Second, chromedp.KeyEvent(testAddress), chromedp.KeyEvent(kb.Enter))
	id := waitTracking(t, ctx)
	exactlyOneOrder(t, name, id)
	if got := storedItems(t, id); !reflect.DeepEqual(got, []storedItem{item}) {
		t.Errorf("stored items %+v; want %+v", got, []storedItem{item})
	}
}

func testPhoneScreen(t *testing.T) {
	ctx := customerTab(t, "phone")
	const name = "Small Screen"
	// Against the device's width: a mobile browser zooms out to fit a page that is too wide, and then its
	// innerWidth grows with the page.
	const phoneWidth = 390
	noSideways := fmt.Sprintf(`document.documentElement.scrollWidth <= %d`, phoneWidth)
	doStep(t, ctx, "a 390 px wide phone", 5*time.Second, chromedp.EmulateViewport(phoneWidth, 844, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	openShop(t, ctx)
	if !runJS[bool](t, ctx, noSideways) {
		t.Errorf("the menu is wider than the phone: %d px", runJS[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	if err := saveScreenshot(ctx, filepath.Join(stack.Root, "artifacts", "customer-menu-phone.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	fillCart(t, ctx, name, testPhone, twoPizzas)
	if !runJS[bool](t, ctx, noSideways) {
		t.Errorf("the cart is wider than the phone: %d px", runJS[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	if err := saveScreenshot(ctx, filepath.Join(stack.Root, "artifacts", "customer-cart-phone.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	doStep(t, ctx, "order", 5*time.Second, chromedp.Click(chromedp.ID("place")))
	id := waitTracking(t, ctx)
	advance(t, id, "ACCEPTED")
	doStep(t, ctx, "ACCEPTED appears", 10*time.Second, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(reachedStep, "ACCEPTED"))))
	if !runJS[bool](t, ctx, noSideways) {
		t.Errorf("the tracking page is wider than the phone: %d px", runJS[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	if err := saveScreenshot(ctx, filepath.Join(stack.Root, "artifacts", "customer-tracking-phone.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}
}

// The gateway restarts while the customer watches: the page says it is reconnecting, and once the gateway is
// back it shows what happened meanwhile, without a reload and without a step twice.
func testTrackingSurvivesGatewayRestart(t *testing.T) {
	ctx := customerTab(t, "restart")
	const name = "Restart Watcher"
	openShop(t, ctx)
	fillCart(t, ctx, name, testPhone, twoPizzas[:1])
	doStep(t, ctx, "order", 5*time.Second, chromedp.Click(chromedp.ID("place")))
	id := waitTracking(t, ctx)
	doStep(t, ctx, "the stream is live", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
		chromedp.Evaluate[chromedp.Void](`window.noReloadMarker = 1`))

	pid, err := stack.SupervisorPid("gateway")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	doStep(t, ctx, "the page says it is reconnecting", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="reconnecting"]`)))
	waitExited(t, pid)
	// Meanwhile the kitchen goes on, straight on the order service (the gateway is down).
	for _, st := range []string{"ACCEPTED", "BAKING"} {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/orders/%s/status", stack.Ports.Order, id),
			strings.NewReader(`{"status":"`+st+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("move to %s on order directly: %v", st, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("move to %s on order directly: %d", st, resp.StatusCode)
		}
	}
	if out, err := stack.Script(5*time.Minute, "stack.sh", "start"); err != nil {
		t.Fatalf("restart gateway: %v\n%s", err, out)
	}
	stack.HTTP.CloseIdleConnections()
	doStep(t, ctx, "the page catches up", 45*time.Second,
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(reachedStep, "BAKING"))),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)))
	if runJS[int](t, ctx, `window.noReloadMarker || 0`) != 1 {
		t.Fatal("the page reloaded; it must catch up over the event stream")
	}
	times := runJS[string](t, ctx, `JSON.stringify(Array.from(document.querySelectorAll('#steps [data-reached] time')).map(e => e.dateTime))`)
	if n := runJS[int](t, ctx, `document.querySelectorAll('#steps [data-reached]').length`); n != 3 || strings.Contains(times, `""`) {
		t.Errorf("%d steps reached with times %s; want CREATED, ACCEPTED and BAKING, each with its time", n, times)
	}
}

// A browser that did not place the order (another device) has no stored token: the page asks for it, keeps it
// out of the URL, and then shows the order.
func testTrackingWithTypedToken(t *testing.T) {
	ctx := customerTab(t, "typed-token")
	id, token := placeTracked(t)
	doStep(t, ctx, "the page asks for the token", 30*time.Second,
		chromedp.Navigate(stack.GatewayURL+"/track/"+id),
		chromedp.WaitVisible(chromedp.ID("token")))
	doStep(t, ctx, "a wrong token is refused at the field", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token"+kb.Enter),
		chromedp.WaitVisible(chromedp.ID("token-error")))
	doStep(t, ctx, "the right token shows the order", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("token"), token+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(reachedStep, "CREATED"))))
	if loc := runJS[string](t, ctx, `location.href`); loc != stack.GatewayURL+"/track/"+id {
		t.Errorf("tracking page at %q; want /track/%s and nothing more", loc, id)
	}
}
