// Command kitchen is a simulated pizza joint for demos: customers place orders through the gateway, and the
// kitchen moves each one along its lifecycle through the staff API, so the staff board has something to show.
// It uses only the public HTTPS API. The staff token comes from KITCHEN_STAFF_TOKEN (never a flag: ps shows
// flags).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kitchen:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		gateway = flag.String("gateway", "https://localhost:8443", "gateway base URL")
		caFile  = flag.String("ca", "certs/ca.pem", "CA certificate that signed the gateway's certificate")
		runFor  = flag.Duration("for", 2*time.Minute, "how long to run")
		every   = flag.Duration("every", 3*time.Second, "a new customer order this often")
	)
	flag.Parse()
	token := os.Getenv("KITCHEN_STAFF_TOKEN")
	if token == "" {
		return errors.New("set KITCHEN_STAFF_TOKEN (make staff-token NAME=kitchen prints one)")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s", *caFile)
	}
	k := &kitchen{base: *gateway, token: token, client: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *runFor)
	defer cancel()
	fmt.Printf("kitchen open for %s: a new order every %s; watch %s/staff/\n", *runFor, *every, *gateway)

	orders, tick := time.NewTicker(*every), time.NewTicker(time.Second)
	defer orders.Stop()
	defer tick.Stop()
	k.placeOrder(ctx)
	for {
		select {
		case <-ctx.Done():
			fmt.Println("kitchen closed")
			return nil
		case <-orders.C:
			k.placeOrder(ctx)
		case <-tick.C:
			k.work(ctx)
		}
	}
}

type kitchen struct {
	base, token string
	client      *http.Client
}

type orderView struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	UpdatedAt time.Time `json:"updated_at"`
	Customer  struct {
		Name string `json:"name"`
	} `json:"customer"`
}

var (
	names  = []string{"Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan", "Radia"}
	pizzas = []string{"margherita", "marinara", "pepperoni", "funghi", "quattro-formaggi", "diavola"}
	sizes  = []string{"S", "M", "L"}
	// next status and how long an order stays in its current one
	steps = map[string]struct {
		next string
		stay time.Duration
	}{
		"CREATED":          {"ACCEPTED", 4 * time.Second},
		"ACCEPTED":         {"BAKING", 5 * time.Second},
		"BAKING":           {"OUT_FOR_DELIVERY", 10 * time.Second},
		"OUT_FOR_DELIVERY": {"DELIVERED", 8 * time.Second},
	}
)

func (k *kitchen) placeOrder(ctx context.Context) {
	items := []map[string]any{}
	for range 1 + rand.IntN(3) {
		items = append(items, map[string]any{"pizza": pizzas[rand.IntN(len(pizzas))], "size": sizes[rand.IntN(3)], "quantity": 1 + rand.IntN(2)})
	}
	name := names[rand.IntN(len(names))]
	body := map[string]any{
		"customer": map[string]string{"name": name, "phone": fmt.Sprintf("+1 555 01%02d", rand.IntN(100)),
			"address": fmt.Sprintf("%d Demo Street", 1+rand.IntN(99))},
		"items": items,
	}
	var o orderView
	if err := k.call(ctx, "POST", "/pizza", "", body, &o); err != nil {
		if ctx.Err() == nil { // closing time cuts calls short; that is no error
			fmt.Println("customer:", err)
		}
		return
	}
	fmt.Printf("%s  %s ordered %d pizza line(s): %s\n", time.Now().Format(time.TimeOnly), name, len(items), o.ID)
}

// work moves every order that has been long enough in its status to the next one; now and then a new order
// is cancelled instead.
func (k *kitchen) work(ctx context.Context) {
	for status, step := range steps {
		var page struct {
			Orders []orderView `json:"orders"`
		}
		if err := k.call(ctx, "GET", "/staff/api/orders?limit=50&status="+status, k.token, nil, &page); err != nil {
			if ctx.Err() == nil {
				fmt.Println("kitchen:", err)
			}
			return
		}
		for _, o := range page.Orders {
			if time.Since(o.UpdatedAt) < step.stay {
				continue
			}
			next := step.next
			if status == "CREATED" && rand.IntN(10) == 0 {
				next = "CANCELLED"
			}
			if err := k.call(ctx, "POST", "/staff/api/orders/"+o.ID+"/status", k.token, map[string]string{"status": next}, nil); err != nil {
				fmt.Println("kitchen:", err)
				continue
			}
			fmt.Printf("%s  %s's order %s: %s → %s\n", time.Now().Format(time.TimeOnly), o.Customer.Name, o.ID[len(o.ID)-6:], status, next)
		}
	}
}

func (k *kitchen) call(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
