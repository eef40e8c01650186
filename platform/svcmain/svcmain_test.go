package svcmain

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ardanlabs/conf/v3"
)

type testConfig struct {
	conf.Version
	Common
	Password string `conf:"mask"`
	Port     int    `conf:"default:8080"`
}

// withArgs sets the command line conf.Parse reads, for one test.
func withArgs(t *testing.T, args ...string) {
	old := os.Args
	os.Args = append([]string{"svc"}, args...)
	t.Cleanup(func() { os.Args = old })
}

func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr error // nil: started
		check   func(t *testing.T, cfg testConfig, out string)
	}{
		{
			name: "environment and flags, secrets masked in the logged config",
			args: []string{"--port=9090"},
			env:  map[string]string{"SVC_LOG_LEVEL": "debug", "SVC_PASSWORD": "hunter2-not-logged"},
			check: func(t *testing.T, cfg testConfig, out string) {
				if cfg.Log.Level != "debug" || cfg.Port != 9090 || cfg.Password != "hunter2-not-logged" {
					t.Errorf("config = %+v; want level debug, port 9090 and the password read", cfg)
				}
				if strings.Contains(out, "hunter2") {
					t.Errorf("the logged config shows the password: %s", out)
				}
				if !strings.Contains(out, "--port=9090") || !strings.Contains(out, `"service":"svc"`) {
					t.Errorf("the logged config lacks the port or the service name: %s", out)
				}
			},
		},
		{name: "help is not a failure", args: []string{"--help"}, wantErr: ErrHelpShown,
			check: func(t *testing.T, _ testConfig, out string) {
				if !strings.Contains(out, "--port") {
					t.Errorf("usage lacks the options: %s", out)
				}
			}},
		{name: "a bad log level", env: map[string]string{"SVC_LOG_LEVEL": "loud"}, wantErr: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withArgs(t, tc.args...)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var cfg testConfig
			var out bytes.Buffer
			ctx, stop, logger, err := Start(context.Background(), &out, "svc", "SVC", &cfg)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Start: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Start = %v; want %v", err, tc.wantErr)
			}
			if err == nil {
				defer stop()
				if ctx.Err() != nil || logger == nil {
					t.Fatal("started without a live context or a logger")
				}
			}
			if tc.check != nil {
				tc.check(t, cfg, out.String())
			}
		})
	}
}

// errAny stands for any error in the table.
var errAny = errors.New("any error")
