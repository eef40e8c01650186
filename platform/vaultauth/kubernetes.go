package vaultauth

import (
	"context"
	"fmt"

	vault "github.com/hashicorp/vault/api"
)

// kubernetes logs in with the pod's service-account token (a JWT), read at every login: projected tokens are
// rotated by the kubelet, and a token read once would expire under a long-running service.
type kubernetes struct {
	mount, role, tokenFile string
}

func (k *kubernetes) name() string { return MethodKubernetes }

func (k *kubernetes) login(ctx context.Context, c *vault.Client) (*vault.Secret, error) {
	jwt, err := readTrimmed(k.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("kubernetes service-account token: %w", err)
	}
	auth, err := c.Logical().WriteWithContext(ctx, "auth/"+k.mount+"/login", map[string]any{"role": k.role, "jwt": jwt})
	if IsForbidden(err) {
		return nil, fmt.Errorf("kubernetes login as role %q (mount %q): Vault refused the service-account token "+
			"(not one the cluster vouches for, or its service account or namespace is not bound to the role): %w", k.role, k.mount, err)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes login as role %q (mount %q): %w", k.role, k.mount, err)
	}
	return auth, nil
}
