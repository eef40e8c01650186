package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/pizzajoint/mesh/provision"
)

// natsCmd runs the NATS commands, which need neither Vault nor Consul:
//
//	nats-auth     meshctl's own identity, then the server's authorization rendered from the registry
//	nats-key      the instance's NATS identity (MESHCTL_INSTANCE_*), with its service's permissions;
//	              `nats-key rotate` gives it a new key with the previous one still admitted, and
//	              `nats-key retire` drops the previous one once no connection uses it (MESHCTL_NATS_RETIRE_WAIT);
//	              on a cluster `nats-key unused` waits on each server (MESHCTL_NATS_MONITOR) and the retire
//	              runs with no monitoring URL
//	nats-stream   the event stream created, or its configuration brought up to date; `nats-stream status`
//	              prints its state in one line
//
// nats-auth and every nats-key print "reload" when the authorization changed: the running server must reread it.
func natsCmd(ctx context.Context, cfg config, inst provision.Instance, stdout io.Writer, logger *slog.Logger) error {
	users := provision.NewNATSUsers(cfg.NATS, cfg.Repo, logger)
	var (
		changed bool
		err     error
	)
	switch cfg.Args.Num(0) {
	case "nats-auth":
		if _, err = users.ProvisionerSeed(); err == nil {
			changed, err = users.Render()
		}
	case "nats-key":
		switch cfg.Args.Num(1) {
		case "":
			changed, err = users.DeliverKey(inst, inst.Service)
		case "rotate":
			changed, err = users.RotateKey(inst, inst.Service)
		case "retire":
			changed, err = users.RetireKey(ctx, inst)
		case "unused":
			return users.WaitUnused(ctx, inst)
		default:
			return fmt.Errorf("nats-key %q: want no argument, rotate, unused or retire", cfg.Args.Num(1))
		}
	default: // nats-stream
		if cfg.Args.Num(1) == "status" {
			line, err := users.StreamState(ctx, cfg.Timeout)
			if err == nil {
				_, err = fmt.Fprintln(stdout, line)
			}
			return err
		}
		return users.EnsureStream(ctx, cfg.Timeout)
	}
	if err == nil && changed {
		_, err = fmt.Fprintln(stdout, "reload")
	}
	return err
}
