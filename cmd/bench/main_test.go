package main

import (
	"io"
	"strings"
	"testing"
)

// Flags are checked before any stack starts; none of these cases starts one.
func TestRunFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // "" for success
	}{
		{"help is no failure", []string{"-h"}, ""},
		{"a level that is no number", []string{"-levels", "1,x"}, `-levels: "x" is not a positive number`},
		{"a level of zero clients", []string{"-levels", "0"}, `-levels: "0" is not a positive number`},
		{"a rate of zero", []string{"-rates", "100,0"}, `-rates: "0" is not a positive number`},
		{"an env setting without =", []string{"-env", "ORDER_DB_MAX_OPEN"}, `-env: "ORDER_DB_MAX_OPEN" is not KEY=VALUE`},
		{"an unknown flag", []string{"-nope"}, "flag provided but not defined: -nope"},
		{"a variant without a name", []string{"-variants", ":STACK_TRACES=0"}, `-variants: ":STACK_TRACES=0" does not start with a name`},
		{"a variant that sets nothing", []string{"-variants", "same"}, "-variants: same sets nothing"},
		{"a variant named twice", []string{"-variants", "a:X=1;a:X=2"}, `-variants: "a" is named twice`},
		{"a variant's setting without =", []string{"-variants", "a:X"}, `-variants: a: "X" is not KEY=VALUE`},
		{"a command that does not exist", []string{"event"}, `unknown command "event"`},
		{"events: an argument after the flags", []string{"events", "now"}, `unexpected "now"`},
		{"events: help is no failure", []string{"events", "-h"}, ""},
		{"events: a level that is no number", []string{"events", "-levels", "100,x"}, `-levels: "x" is not a positive number`},
		{"events: more changes than the orders can take", []string{"events", "-levels", "10", "-changes", "31"},
			"31 changes over 10 orders: at most 3 each"},
		{"events: no rate", []string{"events", "-rate", "0"}, "a rate above 0"},
		{"events: an env setting without =", []string{"events", "-env", "X"}, `-env: "X" is not KEY=VALUE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args, io.Discard, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("run(%q) = %v; want success", tc.args, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("run(%q) = %v; want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}
