package order

import (
	"fmt"
	"slices"
)

// Size of a pizza.
type Size string

const (
	SizeSmall  Size = "S"
	SizeMedium Size = "M"
	SizeLarge  Size = "L"
)

// Valid reports whether z is a size the kitchen makes.
func (z Size) Valid() bool { return z == SizeSmall || z == SizeMedium || z == SizeLarge }

// Currency is the ISO 4217 code of every price: cents are hundredths of it.
const Currency = "EUR"

// MenuItem is a pizza and its price per size, in integer cents of Currency.
type MenuItem struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	PriceCents  map[Size]int64 `json:"price_cents"`
}

// Menu is what the kitchen sells. Prices live here, on the server: a client never sets a price.
type Menu []MenuItem

// DefaultMenu is the pizza joint's menu.
var DefaultMenu = Menu{
	{Name: "margherita", Description: "tomato, mozzarella, basil", PriceCents: map[Size]int64{"S": 900, "M": 1200, "L": 1500}},
	{Name: "marinara", Description: "tomato, garlic, oregano", PriceCents: map[Size]int64{"S": 800, "M": 1050, "L": 1300}},
	{Name: "pepperoni", Description: "tomato, mozzarella, pepperoni", PriceCents: map[Size]int64{"S": 1000, "M": 1350, "L": 1700}},
	{Name: "funghi", Description: "tomato, mozzarella, mushrooms", PriceCents: map[Size]int64{"S": 950, "M": 1250, "L": 1550}},
	{Name: "quattro-formaggi", Description: "mozzarella, gorgonzola, parmesan, fontina", PriceCents: map[Size]int64{"S": 1100, "M": 1450, "L": 1800}},
	{Name: "diavola", Description: "tomato, mozzarella, spicy salami, chili", PriceCents: map[Size]int64{"S": 1050, "M": 1400, "L": 1750}},
}

// Price is the unit price of pizza in size z. A pizza or size not on the menu is a ValidationError naming
// "pizza" or "size".
func (m Menu) Price(pizza string, z Size) (int64, error) {
	price, err := m.price(pizza, z)
	if err != nil {
		return 0, err // not a nil *ValidationError in a non-nil error
	}
	return price, nil
}

// PriceItems prices the lines of an order and totals them. An item not on the menu is a ValidationError
// naming it (e.g. "items[1].pizza").
func (m Menu) PriceItems(items []ItemRequest) ([]Item, int64, error) {
	priced := make([]Item, len(items))
	var total int64
	for i, it := range items {
		price, err := m.price(it.Pizza, it.Size)
		if err != nil {
			return nil, 0, &ValidationError{Field: fmt.Sprintf("items[%d].%s", i, err.Field), Reason: err.Reason}
		}
		priced[i] = Item{Pizza: it.Pizza, Size: it.Size, Quantity: it.Quantity, UnitPriceCents: price}
		total += price * int64(it.Quantity)
	}
	return priced, total, nil
}

func (m Menu) price(pizza string, z Size) (int64, *ValidationError) {
	i := slices.IndexFunc(m, func(it MenuItem) bool { return it.Name == pizza })
	if i < 0 {
		return 0, &ValidationError{Field: "pizza", Reason: fmt.Sprintf("unknown pizza %q (see GET /menu)", pizza)}
	}
	price, ok := m[i].PriceCents[z]
	if !ok {
		return 0, &ValidationError{Field: "size", Reason: fmt.Sprintf("%s is not made in size %q", pizza, z)}
	}
	return price, nil
}
