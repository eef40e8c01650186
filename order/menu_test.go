package order

import (
	"errors"
	"testing"
)

func TestPriceItems(t *testing.T) {
	tests := []struct {
		name  string
		items []ItemRequest
		total int64
		field string // "": priced
	}{
		{"two lines", []ItemRequest{{"margherita", SizeLarge, 2}, {"funghi", SizeSmall, 1}}, 2*1500 + 950, ""},
		{"unknown pizza", []ItemRequest{{"margherita", SizeLarge, 1}, {"hawaii", SizeLarge, 1}}, 0, "items[1].pizza"},
		{"unknown size", []ItemRequest{{"margherita", "XL", 1}}, 0, "items[0].size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, total, err := DefaultMenu.PriceItems(tt.items)
			if tt.field != "" {
				var v *ValidationError
				if !errors.As(err, &v) || v.Field != tt.field {
					t.Fatalf("PriceItems = %v, want a ValidationError on %s", err, tt.field)
				}
				return
			}
			if err != nil || total != tt.total || len(items) != len(tt.items) {
				t.Fatalf("PriceItems = %v, %d, %v; want %d lines, total %d", items, total, err, len(tt.items), tt.total)
			}
		})
	}
	if _, err := DefaultMenu.Price("margherita", SizeLarge); err != nil {
		t.Errorf("Price of a pizza on the menu: %v (a nil *ValidationError in an error?)", err)
	}
}
