package provision

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// AdminTTL bounds the provisioning token of one run: a crash or a kill -9 leaves nothing usable for longer.
const AdminTTL = "15m"

// BeginProvisioning gives the Vault client a credential that may write policies, auth methods and mounts, for
// this run only: a root token generated from the unseal key share (root's file; root is trusted), exchanged at
// once for an orphan token with the root policy and a TTL of AdminTTL, the generated root revoked at once. The
// returned end revokes the short token; callers defer it (signals cancel ctx, so it runs then too). Nothing of it
// is written to disk, logged (accessors only) or passed to another process.
func (s *Session) BeginProvisioning(ctx context.Context) (end func(), err error) {
	root, err := GenerateRootFromFile(ctx, s.vault, s.unsealKeyFile())
	if err != nil {
		return nil, fmt.Errorf("provisioning generates a root token for this run: %w", err)
	}
	rc, err := s.vault.Clone()
	if err != nil {
		return nil, err
	}
	rc.SetToken(root)
	// The generated root is revoked whatever happens next; ctx may already be cancelled by a signal.
	defer func() {
		c, cancel := s.ctx(context.WithoutCancel(ctx))
		defer cancel()
		if rerr := rc.Auth().Token().RevokeSelfWithContext(c, ""); rerr != nil {
			err = errors.Join(err, fmt.Errorf("revoke the generated root token: %w", rerr))
		}
	}()
	c, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := rc.Auth().Token().CreateOrphanWithContext(c, &vault.TokenCreateRequest{
		Policies: []string{"root"}, TTL: AdminTTL, ExplicitMaxTTL: AdminTTL, Renewable: new(bool),
		DisplayName: "meshctl-provisioning", Metadata: map[string]string{"created_by": "meshctl, for one run"},
	})
	if err != nil {
		return nil, fmt.Errorf("short-lived provisioning token: %w", err)
	}
	short, accessor := sec.Auth.ClientToken, sec.Auth.Accessor
	prev, prevAdmin := s.vault.Token(), s.admin
	s.vault.SetToken(short)
	s.admin = true
	s.logger.Info("provisioning token for this run (root policy, generated root revoked)", "ttl", AdminTTL, "accessor", accessor)
	end = func() {
		c, cancel := s.ctx(context.WithoutCancel(ctx))
		defer cancel()
		if err := s.vault.Auth().Token().RevokeSelfWithContext(c, ""); err != nil {
			s.logger.Error("could not revoke this run's provisioning token; it expires by itself", "accessor", accessor, "ttl", AdminTTL, "err", err)
		} else {
			s.logger.Info("provisioning token revoked", "accessor", accessor)
		}
		s.vault.SetToken(prev)
		s.admin = prevAdmin
	}
	return end, nil
}

// GenerateRootFromFile is GenerateRoot with the unseal key share in keyFile. Vault runs one generate-root
// attempt at a time and GenerateRoot cancels a stale one, so two runs at once (a rotation beside a supervised
// restart's delivery) would cancel each other's: the key file's folder is the lock every such run shares.
func GenerateRootFromFile(ctx context.Context, client *vault.Client, keyFile string) (string, error) {
	key, err := readSecretFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("the unseal key: %w", err)
	}
	unlock, err := lockDir(ctx, filepath.Dir(keyFile), time.Minute)
	if err != nil {
		return "", err
	}
	defer unlock()
	return GenerateRoot(ctx, client, key)
}

// GenerateRoot makes a root token with Vault's generate-root protocol from one unseal key share (the stack has
// one share, threshold one), as `vault operator generate-root` does: a stale attempt is cancelled, a new one
// starts with a one-time pad, and the encoded token is base64(token XOR otp).
func GenerateRoot(ctx context.Context, client *vault.Client, unsealKey string) (string, error) {
	sys := client.Sys()
	st, err := sys.GenerateRootStatusWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("generate-root status: %w", err)
	}
	if st.Started {
		// An attempt nobody finished (a crash mid-run, or a person by hand): it would refuse a new one.
		if err := sys.GenerateRootCancelWithContext(ctx); err != nil {
			return "", fmt.Errorf("cancel a stale generate-root attempt: %w", err)
		}
	}
	if st.OTPLength <= 0 {
		return "", fmt.Errorf("vault reports no OTP length for generate-root (too old a Vault)")
	}
	otp, err := base62(st.OTPLength)
	if err != nil {
		return "", err
	}
	init, err := sys.GenerateRootInitWithContext(ctx, otp, "")
	if err != nil {
		return "", fmt.Errorf("generate-root init: %w", err)
	}
	done, err := sys.GenerateRootUpdateWithContext(ctx, unsealKey, init.Nonce)
	if err != nil {
		_ = sys.GenerateRootCancelWithContext(context.WithoutCancel(ctx))
		return "", fmt.Errorf("generate-root with the unseal key: %w", err)
	}
	if !done.Complete || done.EncodedToken == "" {
		_ = sys.GenerateRootCancelWithContext(context.WithoutCancel(ctx))
		return "", fmt.Errorf("generate-root not complete after one key share (%d of %d)", done.Progress, done.Required)
	}
	return decodeRootToken(done.EncodedToken, otp)
}

// decodeRootToken undoes generate-root's encoding: base64 (unpadded) of the token XOR the one-time pad.
func decodeRootToken(encoded, otp string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(encoded)
	if err != nil {
		return "", fmt.Errorf("generate-root's encoded token: %w", err)
	}
	if len(b) != len(otp) {
		return "", fmt.Errorf("generate-root's encoded token has %d bytes, the one-time pad %d", len(b), len(otp))
	}
	for i := range b {
		b[i] ^= otp[i]
	}
	return string(b), nil
}

// base62 is a random string of n letters and digits (the one-time pad Vault expects).
func base62(n int) (string, error) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	out := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range out {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		out[i] = alphabet[v.Int64()]
	}
	return string(out), nil
}

// lockDir holds an exclusive flock on a folder until unlock (the folder itself: no lock file to create in a
// folder that may be mounted read-only). It waits at most within for another holder, or until ctx ends.
func lockDir(ctx context.Context, dir string, within time.Duration) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: another run holds it: %w", dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
