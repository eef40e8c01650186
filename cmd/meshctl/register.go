package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pizzajoint/mesh/platform/consulreg"
)

// Registration is an instance of a service the stack runs from another project's binary (NATS), which cannot
// register itself: `meshctl register` does it for the instance, with the instance's own token.
type Registration struct {
	ID        string `conf:"help:the instance's Consul service ID, e.g. nats-1"`
	Name      string `conf:"help:the service's name, e.g. nats"`
	Address   string `conf:"default:127.0.0.1,help:where the instance's sidecar reaches it"`
	Port      int    `conf:"help:the instance's port"`
	CheckURL  string `conf:"help:HTTP(S) URL Consul checks for the instance's health"`
	TokenFile string `conf:"help:file holding the instance's Consul token"`
	// AdvertiseNode: in a pod (Compose), the instance and its sidecar are advertised at the agent's node address
	// while the sidecar still reaches the instance on Address (the pod's loopback).
	AdvertiseNode bool `conf:"default:false,help:advertise at the agent's node address (a pod's), not Address"`
}

// register keeps the instance registered with the agent at addr, with its sidecar, until ctx ends, then takes
// it out; it registers it again when the agent lost it or the token changed (consulreg), as our services do.
func register(ctx context.Context, addr string, r Registration, logger *slog.Logger) error {
	if r.ID == "" || r.Name == "" || r.Port == 0 || r.TokenFile == "" {
		return errors.New("register needs MESHCTL_REGISTER_ID, _NAME, _PORT and _TOKEN_FILE")
	}
	var (
		run, leave func()
		err        error
	)
	// The agent may still be starting, or the token not yet replicated: try for a while before giving up.
	for deadline := time.Now().Add(time.Minute); ; {
		run, leave, err = consulreg.Join(ctx, addr, consulreg.Instance{ID: r.ID, Name: r.Name, Address: r.Address,
			Port: r.Port, CheckURL: r.CheckURL, TokenFile: r.TokenFile, AdvertiseNode: r.AdvertiseNode}, logger)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		logger.Warn("registration failed; retrying", "instance", r.ID, "error", err)
		time.Sleep(time.Second)
	}
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { defer close(done); run() }()
	<-ctx.Done()
	leave()
	<-done
	return nil
}
