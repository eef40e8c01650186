package svcmain

import (
	"bytes"
	"context"
	"errors"
	"io"
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
			p, err := Start(context.Background(), &out, "svc", "SVC", &cfg)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Start: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Start = %v; want %v", err, tc.wantErr)
			}
			if err == nil {
				if p.Ctx.Err() != nil || p.Logger == nil {
					t.Fatal("started without a live context or a logger")
				}
				if err := p.Finish(nil); err != nil || p.Ctx.Err() == nil {
					t.Fatalf("Finish = %v, context %v; want nil and the context ended", err, p.Ctx.Err())
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

// Finish waits for every goroutine of the process, which end with its context, and returns the first error.
func TestFinishJoinsTheGroup(t *testing.T) {
	withArgs(t)
	var cfg testConfig
	p, err := Start(context.Background(), io.Discard, "svc", "SVC", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	p.Go(func() error { <-p.Ctx.Done(); close(ended); return nil })
	failure := errors.New("background work failed")
	p.Go(func() error { <-p.Ctx.Done(); return failure })
	if err := p.Finish(nil); !errors.Is(err, failure) {
		t.Errorf("Finish = %v; want the group's error", err)
	}
	select {
	case <-ended:
	default:
		t.Error("Finish returned before a goroutine of the group ended")
	}
}

// A failing goroutine ends the process's context, so the server and the other goroutines stop too.
func TestAFailingGoroutineEndsTheContext(t *testing.T) {
	withArgs(t)
	var cfg testConfig
	p, err := Start(context.Background(), io.Discard, "svc", "SVC", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	failure := errors.New("lost the listener")
	p.Go(func() error { return failure })
	<-p.Ctx.Done()
	if err := p.Finish(nil); !errors.Is(err, failure) {
		t.Errorf("Finish = %v; want %v", err, failure)
	}
}
