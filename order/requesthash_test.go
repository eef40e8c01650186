package order

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// requestHashV1 is RequestHash as it was written with encoding/json (v1), which made every hash stored so far.
func requestHashV1(n NewOrder) []byte {
	b, _ := json.Marshal(struct {
		Customer Customer      `json:"customer"`
		Items    []ItemRequest `json:"items"`
	}{n.Customer, n.Items})
	sum := sha256.Sum256(b)
	return sum[:]
}

// Idempotency keys stored before RequestHash moved to JSON v2 must still match their requests: the hash of
// every body is the one v1 made, including where v1 and v2 write different JSON by default. The one
// difference left is invalid UTF-8 (v1 wrote it as the escape \ufffd, v2 as the character): no such order was
// ever hashed, since CreateOrder refuses it first (and the order API's decoder before it), which the refused
// rows check.
func TestRequestHashIsStable(t *testing.T) {
	ada := Customer{Name: "Ada", Phone: "+44 20 7946 0000", Address: "1 Main St"}
	one := []ItemRequest{{Pizza: "margherita", Size: SizeLarge, Quantity: 2}}
	tests := []struct {
		name    string
		n       NewOrder
		refused bool // CreateOrder refuses the order before hashing it, so no hash of it is stored
	}{
		{"plain", NewOrder{Customer: ada, Items: one}, false},
		{"several items", NewOrder{Customer: ada, Items: []ItemRequest{{"margherita", SizeSmall, 1}, {"funghi", SizeMedium, 20}}}, false},
		{"the key is not hashed", NewOrder{Customer: ada, Items: one, IdempotencyKey: "k-1"}, false},
		{"HTML characters (v1 escapes them)", NewOrder{Customer: Customer{Name: "<b>Tom & Jerry</b>", Phone: "12345", Address: "a>b"}, Items: one}, false},
		{"U+2028 and U+2029 (v1 escapes them)", NewOrder{Customer: Customer{Name: "line\u2028sep\u2029", Phone: "12345", Address: "x"}, Items: one}, false},
		{"invalid UTF-8 in the name", NewOrder{Customer: Customer{Name: "bad\xff\xfe", Phone: "12345", Address: "x"}, Items: one}, true},
		{"invalid UTF-8 in the address", NewOrder{Customer: Customer{Name: "Ada", Phone: "12345", Address: "\xc3("}, Items: one}, true},
		{"invalid UTF-8 in a pizza", NewOrder{Customer: ada, Items: []ItemRequest{{"margherita\xff", SizeLarge, 1}}}, true},
		{"quotes, backslashes, control characters", NewOrder{Customer: Customer{Name: `"q" \ ` + "\t\x00\x1f\x7f", Phone: "12345", Address: "/"}, Items: one}, false},
		{"non-ASCII", NewOrder{Customer: Customer{Name: "Zoë Ørsted 山田", Phone: "12345", Address: "Straße 1 🍕"}, Items: one}, false},
		{"nil items (v1 writes null)", NewOrder{Customer: ada}, false},
		{"empty items", NewOrder{Customer: ada, Items: []ItemRequest{}}, false},
		{"zero order", NewOrder{}, false},
		{"unknown size, negative quantity", NewOrder{Customer: ada, Items: []ItemRequest{{"x", Size("XXL"), -3}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.refused {
				_, _, perr := DefaultMenu.PriceItems(tt.n.Items)
				if tt.n.Validate() == nil && perr == nil {
					t.Fatal("CreateOrder would hash and store this order; its hash must then be v1's")
				}
				return
			}
			if got, want := RequestHash(tt.n), requestHashV1(tt.n); !bytes.Equal(got, want) {
				t.Errorf("RequestHash = %x; the stored (v1) hash is %x", got, want)
			}
		})
	}
	// And one hash as it is stored today, in case both sides above ever change together.
	const stored = "7664681c431ccb9e5902593359ed0cf0124e1984d6f68f213ccadd28e8e3c384"
	if got := hex.EncodeToString(RequestHash(tests[0].n)); got != stored {
		t.Errorf("RequestHash(plain) = %s; want the stored %s", got, stored)
	}
}
