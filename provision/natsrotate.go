package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/platform/natsauth"
)

// A NATS key rotation has two steps, each followed by the server rereading its authorization:
//
//	RotateKey  a new key pair: its seed in the instance's folder, its public key admitted beside the previous one
//	RetireKey  once no connection uses the previous key (or the wait ran out), the previous key dropped
//
// Between them the instance opens a connection with the new seed and closes the one made with the previous
// (order/orderevents watches its seed file): the server admits both, so nothing is refused while it switches.
// Dropping the previous key makes the server close any connection still using it.

// RotateKey gives the instance a new NATS key pair with role's permissions and admits it beside the one it
// replaces (the registry's previous entry), then renders the server's authorization; changed says whether the
// server must reload it. The seed is written first: a rotation that stops before its registry writes leaves the
// instance's running connection on its admitted key, and the next rotation (or delivery) starts over.
func (n *NATSUsers) RotateKey(inst Instance, role string) (changed bool, err error) {
	if err := validRegistryName(inst.ID); err != nil {
		return false, err
	}
	current, err := n.registered(inst.ID)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("NATS key of %s: no identity to rotate (meshctl nats-key delivers one)", inst.ID)
	}
	if err != nil {
		return false, err
	}
	curRole, curPub, _ := strings.Cut(current, " ")
	if curRole != role {
		return false, fmt.Errorf("NATS key of %s: registered with role %q, not %q", inst.ID, curRole, role)
	}
	d, err := n.openSeedDir(inst)
	if err != nil {
		return false, err
	}
	defer d.Close()
	seed, pub, err := natsauth.NewUser()
	if err != nil {
		return false, err
	}
	if err := d.WriteFile(NATSSeedFile, seed, 0o600); err != nil {
		return false, fmt.Errorf("NATS key of %s: %w", inst.ID, err)
	}
	// An unfinished rotation's previous key is replaced: the instance was told of the registered one since.
	if err := n.writeEntry(inst.ID, previousKeyExt, current); err != nil {
		return false, err
	}
	if err := n.register(inst.ID, role, pub); err != nil {
		return false, err
	}
	n.logger.Info("NATS key rotated; the previous key stays admitted until the instance has left it",
		"instance", inst.ID, "role", role, "public_key", pub, "previous_public_key", curPub)
	return n.Render()
}

// RetireKey drops the instance's previous NATS key once no connection on the server uses it, waiting up to
// the configured RetireWait; when the wait runs out it drops it anyway, and says which connections the server
// will close. With no monitoring URL it does not wait: on a cluster, where each server sees only its own
// connections, WaitUnused has run on every server first. It then renders the authorization; changed says
// whether the server must reload it. With no previous key (nothing rotated, or already retired) it changes
// nothing.
func (n *NATSUsers) RetireKey(ctx context.Context, inst Instance) (changed bool, err error) {
	pub, err := n.previousKey(inst)
	if errors.Is(err, fs.ErrNotExist) {
		n.logger.Info("no previous NATS key to retire", "instance", inst.ID)
		return n.Render()
	}
	if err != nil {
		return false, err
	}
	if n.cfg.Monitor != "" {
		if err := n.waitUnused(ctx, inst, pub); err != nil {
			return false, err
		}
	}
	if err := os.Remove(filepath.Join(n.cfg.UsersDir, inst.ID+previousKeyExt)); err != nil {
		return false, err
	}
	n.logger.Info("previous NATS key retired", "instance", inst.ID, "previous_public_key", pub)
	return n.Render()
}

// WaitUnused waits, as RetireKey does, until no connection on the server at the monitoring URL uses the
// instance's previous key, and changes nothing: on a cluster it runs against each server before the retire.
func (n *NATSUsers) WaitUnused(ctx context.Context, inst Instance) error {
	pub, err := n.previousKey(inst)
	if errors.Is(err, fs.ErrNotExist) {
		n.logger.Info("no previous NATS key to wait for", "instance", inst.ID)
		return nil
	}
	if err != nil {
		return err
	}
	return n.waitUnused(ctx, inst, pub)
}

// previousKey is the public key of the instance's previous NATS key (fs.ErrNotExist: none).
func (n *NATSUsers) previousKey(inst Instance) (string, error) {
	if err := validRegistryName(inst.ID); err != nil {
		return "", err
	}
	previous, err := n.entry(inst.ID, previousKeyExt)
	if err != nil {
		return "", err
	}
	_, pub, _ := strings.Cut(previous, " ")
	if current, _ := n.registered(inst.ID); strings.HasSuffix(current, " "+pub) {
		// A rotation that stopped between its registry writes: the previous key is the current one.
		return "", fmt.Errorf("NATS key of %s: the previous key is still the registered one; rotate again", inst.ID)
	}
	return pub, nil
}

// waitUnused waits up to RetireWait until no connection on the server uses pub; past the wait it logs which
// connections still do and returns nil (dropping the key closes them).
func (n *NATSUsers) waitUnused(ctx context.Context, inst Instance, pub string) error {
	start := time.Now()
	deadline := start.Add(n.cfg.RetireWait)
	for {
		conns, err := n.connectionsWithKey(ctx, pub)
		if err != nil {
			return fmt.Errorf("connections on the previous NATS key of %s: %w (it stays admitted; run the retire again)", inst.ID, err)
		}
		if len(conns) == 0 {
			n.logger.Info("no connection uses the previous NATS key any more", "instance", inst.ID,
				"previous_public_key", pub, "waited", time.Since(start).Round(time.Millisecond))
			break
		}
		if !time.Now().Before(deadline) {
			n.logger.Warn("connections still use the previous NATS key after the wait; dropping it closes them",
				"instance", inst.ID, "previous_public_key", pub, "wait", n.cfg.RetireWait, "connections", conns)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// connz is the part of the monitoring endpoint's /connz the retirement reads.
type connz struct {
	Total       int `json:"total"`
	Connections []struct {
		CID  uint64 `json:"cid"`
		Name string `json:"name"`
		User string `json:"authorized_user"`
	} `json:"connections"`
}

// connectionsWithKey lists the server's open connections authorized as the nkey pub ("<cid> <name>" each).
func (n *NATSUsers) connectionsWithKey(ctx context.Context, pub string) ([]string, error) {
	u, err := url.Parse(n.cfg.Monitor)
	if err != nil {
		return nil, fmt.Errorf("NATS monitoring URL: %w", err)
	}
	u = u.JoinPath("connz")
	u.RawQuery = url.Values{"auth": {"true"}, "user": {pub}, "limit": {"10000"}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u.Redacted(), resp.Status)
	}
	var c connz
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	var found []string
	for _, conn := range c.Connections {
		// Filtered by the server already; checked again so an older server that ignores the filter is read right.
		if conn.User == pub {
			found = append(found, fmt.Sprintf("%d %s", conn.CID, conn.Name))
		}
	}
	return found, nil
}
