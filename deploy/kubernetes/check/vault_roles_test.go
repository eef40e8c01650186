package check

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// vaultRole is what a pod's login depends on in a role file of vault/kubernetes, the files `meshctl
// kubernetes-auth` writes to Vault (which decodes them strictly; here only the bindings are read).
type vaultRole struct {
	Names      []string `json:"bound_service_account_names"`
	Namespaces []string `json:"bound_service_account_namespaces"`
	Audience   string   `json:"audience"`
}

// Kubernetes's defaults: where the kubelet mounts the pod's API token, and the injector's login annotations.
const (
	defaultTokenFile        = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	annotationInject        = "vault.hashicorp.com/agent-inject"
	annotationRole          = "vault.hashicorp.com/role"
	annotationTokenVolume   = "vault.hashicorp.com/agent-service-account-token-volume-name"
	annotationAuthPath      = "vault.hashicorp.com/auth-path"
	vaultKubernetesAuthPath = "auth/kubernetes"
)

func loadVaultRoles(t *testing.T) map[string]vaultRole {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "vault", "kubernetes", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no role files in vault/kubernetes (%v)", err)
	}
	roles := map[string]vaultRole{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r vaultRole
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		roles[strings.TrimSuffix(filepath.Base(f), ".json")] = r
	}
	return roles
}

// vaultLogin is one way a pod logs in to Vault: a role, and the service-account token it presents.
type vaultLogin struct {
	who, role string
	// token is the projected token volume's source, nil when the pod presents its ordinary API token.
	token *corev1.ServiceAccountTokenProjection
}

// TestVaultRolesBindThePods: every Vault role a manifest logs in with (a service's *_VAULT_KUBERNETES_ROLE, the
// injector's vault.hashicorp.com/role) is one that provisioning writes, bound to that pod's service account and
// namespace, and presented a token of the audience the role expects. And every service that talks to Vault
// does so with Kubernetes auth: no secret is delivered to a pod.
func TestVaultRolesBindThePods(t *testing.T) {
	m := load(t)
	roles := loadVaultRoles(t)
	used := 0
	for _, w := range m.workloads() {
		for _, login := range vaultLogins(t, w) {
			used++
			r, ok := roles[login.role]
			if !ok {
				t.Errorf("%s: Vault role %q is not in vault/kubernetes (roles: %v)", login.who, login.role, keys(roles))
				continue
			}
			if sa := w.tmpl.Spec.ServiceAccountName; !slices.Contains(r.Names, sa) {
				t.Errorf("%s: runs as service account %q, but Vault role %q binds %v", login.who, sa, login.role, r.Names)
			}
			if !slices.Contains(r.Namespaces, w.namespace) {
				t.Errorf("%s: runs in namespace %q, but Vault role %q binds %v", login.who, w.namespace, login.role, r.Namespaces)
			}
			switch {
			case login.token == nil && r.Audience != "":
				t.Errorf("%s: presents the pod's API token, but Vault role %q accepts only audience %q (project one)",
					login.who, login.role, r.Audience)
			case login.token != nil && login.token.Audience != r.Audience:
				t.Errorf("%s: presents a token for audience %q, but Vault role %q accepts %q", login.who,
					login.token.Audience, login.role, r.Audience)
			case login.token != nil && login.token.ExpirationSeconds == nil:
				t.Errorf("%s: its projected Vault token has no expirationSeconds", login.who)
			}
		}
	}
	if used == 0 {
		t.Fatal("no manifest logs in to Vault with a role")
	}
}

// vaultLogins lists the Vault logins of a pod template, and reports a service that talks to Vault any other way.
func vaultLogins(t *testing.T, w workload) []vaultLogin {
	t.Helper()
	spec := w.tmpl.Spec
	projected := func(volume string) *corev1.ServiceAccountTokenProjection {
		for _, v := range spec.Volumes {
			if v.Name == volume && v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.ServiceAccountToken != nil {
						return s.ServiceAccountToken
					}
				}
			}
		}
		return nil
	}
	var logins []vaultLogin
	if w.tmpl.Annotations[annotationInject] == "true" {
		who := w.name + " (Vault Agent Injector)"
		if p := w.tmpl.Annotations[annotationAuthPath]; p != "" && p != vaultKubernetesAuthPath {
			t.Errorf("%s: logs in at %s; provisioning writes roles at %s", who, p, vaultKubernetesAuthPath)
		}
		login := vaultLogin{who: who, role: w.tmpl.Annotations[annotationRole]}
		if v := w.tmpl.Annotations[annotationTokenVolume]; v != "" {
			if login.token = projected(v); login.token == nil {
				t.Errorf("%s: %s names %q, which is no projected service-account token volume", who, annotationTokenVolume, v)
			}
		}
		if login.role == "" {
			t.Errorf("%s: no %s", who, annotationRole)
		}
		logins = append(logins, login)
	}
	for _, c := range spec.Containers {
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for k := range env {
			prefix, ok := strings.CutSuffix(k, "_VAULT_ADDR")
			if !ok {
				continue
			}
			who := w.name + "/" + c.Name
			if method := env[prefix+"_VAULT_AUTH_METHOD"]; method != "kubernetes" {
				t.Errorf("%s: %s_VAULT_AUTH_METHOD=%q; pods log in with Kubernetes auth", who, prefix, method)
				continue
			}
			if mount := env[prefix+"_VAULT_KUBERNETES_MOUNT"]; mount != "" && "auth/"+mount != vaultKubernetesAuthPath {
				t.Errorf("%s: logs in at auth/%s; provisioning writes roles at %s", who, mount, vaultKubernetesAuthPath)
			}
			login := vaultLogin{who: who, role: env[prefix+"_VAULT_KUBERNETES_ROLE"]}
			if login.role == "" {
				t.Errorf("%s: no %s_VAULT_KUBERNETES_ROLE", who, prefix)
			}
			file := env[prefix+"_VAULT_KUBERNETES_TOKEN_FILE"]
			if file == "" {
				file = defaultTokenFile
			}
			for _, vm := range c.VolumeMounts {
				if rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/"); ok {
					if p := projected(vm.Name); p != nil && p.Path == rel {
						login.token = p
					}
				}
			}
			if login.token == nil && file != defaultTokenFile {
				t.Errorf("%s: %s_VAULT_KUBERNETES_TOKEN_FILE=%s is no projected service-account token", who, prefix, file)
			}
			logins = append(logins, login)
		}
	}
	return logins
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
