package order

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewOrderValidate(t *testing.T) {
	valid := func() NewOrder {
		return NewOrder{
			Customer: Customer{Name: "Ada", Phone: "+1 555 0100", Address: "1 Main St"},
			Items:    []ItemRequest{{Pizza: "margherita", Size: SizeLarge, Quantity: 2}},
		}
	}
	tests := []struct {
		name   string
		change func(n *NewOrder)
		field  string // "": valid
	}{
		{"valid", func(*NewOrder) {}, ""},
		{"name with accents", func(n *NewOrder) { n.Customer.Name = "Zoë Ørsted" }, ""},
		{"name with inner spaces", func(n *NewOrder) { n.Customer.Name = " Ada  Lovelace " }, ""},
		{"empty name", func(n *NewOrder) { n.Customer.Name = "" }, "customer.name"},
		{"blank name", func(n *NewOrder) { n.Customer.Name = "   " }, "customer.name"},
		{"name of tabs and no-break spaces", func(n *NewOrder) { n.Customer.Name = "\t\u00a0\u3000" }, "customer.name"},
		{"name with NUL", func(n *NewOrder) { n.Customer.Name = "Zoë\u0000" }, "customer.name"},
		{"name with DEL", func(n *NewOrder) { n.Customer.Name = "Ada\u007f" }, "customer.name"},
		{"name with C1 control", func(n *NewOrder) { n.Customer.Name = "Ada\u0085" }, "customer.name"},
		{"name not UTF-8", func(n *NewOrder) { n.Customer.Name = "Ad\xe9" }, "customer.name"},
		{"name too long", func(n *NewOrder) { n.Customer.Name = strings.Repeat("a", MaxNameLen+1) }, "customer.name"},
		{"blank address", func(n *NewOrder) { n.Customer.Address = " \n " }, "customer.address"},
		{"address with escape", func(n *NewOrder) { n.Customer.Address = "1 Main St\x1b[2J" }, "customer.address"},
		{"address with newline", func(n *NewOrder) { n.Customer.Address = "1 Main St\nFlat 2" }, "customer.address"},
		{"address too long", func(n *NewOrder) { n.Customer.Address = strings.Repeat("a", MaxAddressLen+1) }, "customer.address"},
		{"bad phone", func(n *NewOrder) { n.Customer.Phone = "call me" }, "customer.phone"},
		{"no items", func(n *NewOrder) { n.Items = nil }, "items"},
		{"bad size", func(n *NewOrder) { n.Items[0].Size = "XL" }, "items[0].size"},
		{"bad idempotency key", func(n *NewOrder) { n.IdempotencyKey = "a b" }, "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := valid()
			tt.change(&n)
			err := n.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var v *ValidationError
			if !errors.As(err, &v) || v.Field != tt.field {
				t.Fatalf("Validate = %v, want a ValidationError on %s", err, tt.field)
			}
		})
	}
}

// FuzzValidID: whatever a client puts where an order ID goes, ValidID accepts only 26 characters of
// Crockford base32 whose time fits, and every ID NewID makes is accepted.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{NewID(time.Now()), "01ARZ3NDEKTSV4RRFFQ69G5FAV", "01arz3ndektsv4rrffq69g5fav", "", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
		"7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAVX", "01ARZ3NDEKTSV4RRFFQ69G5FAU", "../../etc/passwd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !ValidID(id) {
			return
		}
		if len(id) != 26 {
			t.Fatalf("ValidID(%q) with %d characters", id, len(id))
		}
		for _, r := range id {
			if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz", r) {
				t.Fatalf("ValidID(%q) with %q, not Crockford base32", id, r)
			}
		}
		if id[0] > '7' {
			t.Fatalf("ValidID(%q): its time overflows 48 bits", id)
		}
	})
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID(time.Now())
		if !ValidID(id) || seen[id] {
			t.Fatalf("NewID = %q: invalid or repeated", id)
		}
		seen[id] = true
	}
	a, b := NewID(time.Unix(1_700_000_000, 0)), NewID(time.Unix(1_700_000_001, 0))
	if a >= b {
		t.Errorf("IDs do not sort by time: %s then %s", a, b)
	}
}
