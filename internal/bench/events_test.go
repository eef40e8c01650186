package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/order"
)

func TestEventOptionsCheck(t *testing.T) {
	ok := EventOptions{Levels: []int{100, 1000}, StaffStreams: 3, Changes: 300, Rate: 20}
	for _, tc := range []struct {
		name    string
		edit    func(o *EventOptions)
		wantErr string
	}{
		{"the defaults", func(*EventOptions) {}, ""},
		{"three moves per order at the lowest level", func(o *EventOptions) { o.Levels = []int{100}; o.Changes = 300 }, ""},
		{"more changes than orders can take", func(o *EventOptions) { o.Levels = []int{99} },
			"300 changes over 99 orders: at most 3 each"},
		{"no level", func(o *EventOptions) { o.Levels = nil }, "want levels"},
		{"a level without streams", func(o *EventOptions) { o.Levels = []int{0} }, "level 0"},
		{"no rate", func(o *EventOptions) { o.Rate = 0 }, "a rate above 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			err := o.Check()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Check() = %v; want %q", err, tc.wantErr)
			}
		})
	}
}

// Two orders, a and b; a moves twice, b once (refused once more). The exact streams are:
//
//	a's:   CREATED, ACCEPTED, BAKING
//	b's:   CREATED, ACCEPTED
//	staff: a ACCEPTED, b ACCEPTED, a BAKING (and maybe CREATEDs of a and b, from before "now")
func TestCheckStreams(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f := func(id string, st order.Status, ms int) frame { return frame{at: at(ms), OrderID: id, Status: st} }
	changes := []change{
		{order: 0, status: order.StatusAccepted, sent: at(0), ok: true},
		{order: 1, status: order.StatusAccepted, sent: at(50), ok: true},
		{order: 0, status: order.StatusBaking, sent: at(100), ok: true},
		{order: 1, status: order.StatusBaking, sent: at(150), ok: false}, // refused: no frame due
	}
	exactA := []frame{f("a", order.StatusCreated, -500), f("a", order.StatusAccepted, 20), f("a", order.StatusBaking, 130)}
	exactB := []frame{f("b", order.StatusCreated, -400), f("b", order.StatusAccepted, 90)}
	exactStaff := []frame{f("a", order.StatusAccepted, 21), f("b", order.StatusAccepted, 91), f("a", order.StatusBaking, 131)}

	for _, tc := range []struct {
		name                          string
		a, b, staff                   []frame
		missing, repeated, unexpected int
	}{
		{"exact", exactA, exactB, exactStaff, 0, 0, 0},
		{"staff sees CREATEDs from just before it opened", exactA, exactB,
			append([]frame{f("a", order.StatusCreated, -1), f("b", order.StatusCreated, -1)}, exactStaff...), 0, 0, 0},
		{"a customer frame missing", exactA[:2], exactB, exactStaff, 1, 0, 0},
		{"no history", exactA[1:], exactB, exactStaff, 1, 0, 0},
		{"a customer frame repeated", append(exactA, exactA[2]), exactB, exactStaff, 0, 1, 0},
		{"another order's frame", exactA, append(exactB, exactA[1]), exactStaff, 0, 0, 1},
		{"the refused change's frame", exactA, append(exactB, f("b", order.StatusBaking, 170)), exactStaff, 0, 0, 1},
		{"a staff frame missing", exactA, exactB, exactStaff[1:], 1, 0, 0},
		{"a staff frame repeated", exactA, exactB, append(exactStaff, exactStaff[0]), 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orders := []placed{{id: "a", stream: &sseStream{got: tc.a}}, {id: "b", stream: &sseStream{got: tc.b}}}
			cell := EventCell{Refused: map[string]int{}}
			checkStreams(&cell, orders, []*sseStream{{got: tc.staff}}, changes)
			if cell.Missing != tc.missing || cell.Repeated != tc.repeated || cell.Unexpected != tc.unexpected {
				t.Errorf("missing %d, repeated %d, unexpected %d; want %d, %d, %d", cell.Missing, cell.Repeated,
					cell.Unexpected, tc.missing, tc.repeated, tc.unexpected)
			}
			if tc.name == "exact" {
				want := []time.Duration{20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond}
				got := sorted(cell.Latencies)
				if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
					t.Errorf("latencies %v; want %v (sent → customer frame)", got, want)
				}
			}
		})
	}
}
