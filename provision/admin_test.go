package provision

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// decodeRootToken undoes what Vault does to a generated root token (roottoken.EncodeToken: unpadded base64 of
// token XOR otp), and refuses what is not that.
func TestDecodeRootToken(t *testing.T) {
	otp, err := base62(28)
	if err != nil {
		t.Fatal(err)
	}
	token := "hvs.ABCDEFGHIJKLMNOPQRSTUVWX"
	xored := []byte(token)
	for i := range xored {
		xored[i] ^= otp[i]
	}
	for _, tt := range []struct {
		name, encoded, want, err string
	}{
		{"vault's encoding", base64.RawStdEncoding.EncodeToString(xored), token, ""},
		{"padded base64", base64.StdEncoding.EncodeToString(xored[:26]), "", "illegal base64"},
		{"length differs from the pad", base64.RawStdEncoding.EncodeToString(xored[:20]), "", "one-time pad"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRootToken(tt.encoded, otp)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v; want one about %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want the token", got, err)
			}
		})
	}
	if strings.Trim(otp, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" || len(otp) != 28 {
		t.Errorf("otp %q is not 28 base62 characters", otp)
	}
}

// Runs that generate a root queue on the key's folder: a second holder waits, gives up at its bound, and gets
// the lock once the first lets go.
func TestLockDirQueuesRuns(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	unlock, err := lockDir(ctx, dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := lockDir(ctx, dir, 300*time.Millisecond); err == nil {
		u()
		t.Fatal("a second run got the lock while the first held it")
	}
	unlock()
	u, err := lockDir(ctx, dir, time.Second)
	if err != nil {
		t.Fatalf("the lock after the first run let go: %v", err)
	}
	u()
}
