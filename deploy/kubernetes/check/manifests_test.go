// Package check decodes every manifest in deploy/kubernetes strictly against the Kubernetes API types and checks
// that they refer to each other correctly. A module of its own, so k8s.io/api never enters the product's go.mod.
package check

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// serviceIntentions is consul-k8s's CRD (not in k8s.io/api), decoded strictly all the same.
type serviceIntentions struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Destination struct {
			Name string `json:"name"`
		} `json:"destination"`
		Sources []struct {
			Name        string `json:"name"`
			Action      string `json:"action"`
			Description string `json:"description,omitempty"`
		} `json:"sources"`
	} `json:"spec"`
}

type manifests struct {
	serviceAccounts map[string]bool // by namespace/name
	configMaps      map[string]bool // by namespace/name
	secrets         map[string]bool // by namespace/name
	services        []corev1.Service
	deployments     []appsv1.Deployment
	statefulSets    []appsv1.StatefulSet
	jobs            []batchv1.Job
	pdbs            []policyv1.PodDisruptionBudget
	policies        []networkingv1.NetworkPolicy
	intentions      []serviceIntentions
}

// External ConfigMaps and Secrets: a pod may mount one that no manifest here declares only if it is named here,
// by namespace/name, with who creates it. An entry no pod mounts any more fails too, so the list stays true.
var external = map[string]string{
	"ConfigMap/pizza/vault-ca":     "the operator, from the CA that signed Vault's listener (key ca.pem, public)",
	"Secret/pizza/gateway-tls":     "cert-manager: the gateway's public certificate (kubernetes.io/tls)",
	"ConfigMap/pizza/nats-auth":    "the operator, from the auth.conf `meshctl nats-key` renders (public keys only)",
	"Secret/pizza/order-nats":      "the operator, from the seed file `meshctl nats-key` writes (or Vault)",
	"Secret/pizza/nats-routes-tls": "cert-manager (or Vault PKI through it): the NATS routes' pair and CA",
}

// workload is a pod template with the name and namespace of what runs it. serving workloads (Deployments and
// StatefulSets, not Jobs) run for good: Services select them, and they need a disruption budget and a policy.
type workload struct {
	name, namespace string
	tmpl            corev1.PodTemplateSpec
	claims          []string // a StatefulSet's volumeClaimTemplates, volumes of its pods too
	serving         bool
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.deployments {
		out = append(out, workload{name: "Deployment/" + d.Name, namespace: d.Namespace, tmpl: d.Spec.Template, serving: true})
	}
	for _, s := range m.statefulSets {
		w := workload{name: "StatefulSet/" + s.Name, namespace: s.Namespace, tmpl: s.Spec.Template, serving: true}
		for _, c := range s.Spec.VolumeClaimTemplates {
			w.claims = append(w.claims, c.Name)
		}
		out = append(out, w)
	}
	for _, j := range m.jobs {
		out = append(out, workload{name: "Job/" + j.Name, namespace: j.Namespace, tmpl: j.Spec.Template})
	}
	return out
}

// serving returns the workloads that run for good.
func (m *manifests) serving() []workload {
	var out []workload
	for _, w := range m.workloads() {
		if w.serving {
			out = append(out, w)
		}
	}
	return out
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	m := &manifests{serviceAccounts: map[string]bool{}, configMaps: map[string]bool{}, secrets: map[string]bool{}}
	sep := regexp.MustCompile(`(?m)^---\s*$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range sep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s#%d", filepath.Base(f), i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			// Vault's roles bind namespaces: an object without one would land wherever kubectl points.
			var om struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &om); err != nil || om.Metadata.Namespace == "" {
				t.Errorf("%s (%s %s): no metadata.namespace (%v)", where, tm.Kind, om.Metadata.Name, err)
			}
			strict := func(into any) {
				t.Helper()
				if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
					t.Errorf("%s (%s/%s): %v", where, tm.APIVersion, tm.Kind, err)
				}
			}
			switch tm.APIVersion + "/" + tm.Kind {
			case "v1/ServiceAccount":
				var o corev1.ServiceAccount
				strict(&o)
				m.serviceAccounts[o.Namespace+"/"+o.Name] = true
			case "v1/ConfigMap":
				var o corev1.ConfigMap
				strict(&o)
				m.configMaps[o.Namespace+"/"+o.Name] = true
			case "v1/Secret":
				var o corev1.Secret
				strict(&o)
				// A Secret's value never goes to git: a manifest may declare one only empty (its keys come later).
				if len(o.Data) > 0 || len(o.StringData) > 0 {
					t.Errorf("%s: Secret/%s carries data", where, o.Name)
				}
				m.secrets[o.Namespace+"/"+o.Name] = true
			case "v1/Service":
				var o corev1.Service
				strict(&o)
				m.services = append(m.services, o)
			case "apps/v1/Deployment":
				var o appsv1.Deployment
				strict(&o)
				m.deployments = append(m.deployments, o)
			case "apps/v1/StatefulSet":
				var o appsv1.StatefulSet
				strict(&o)
				m.statefulSets = append(m.statefulSets, o)
			case "batch/v1/Job":
				var o batchv1.Job
				strict(&o)
				m.jobs = append(m.jobs, o)
			case "policy/v1/PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				strict(&o)
				m.pdbs = append(m.pdbs, o)
			case "networking.k8s.io/v1/NetworkPolicy":
				var o networkingv1.NetworkPolicy
				strict(&o)
				m.policies = append(m.policies, o)
			case "consul.hashicorp.com/v1alpha1/ServiceIntentions":
				var o serviceIntentions
				strict(&o)
				m.intentions = append(m.intentions, o)
			default:
				t.Errorf("%s: unexpected kind %s/%s (add it to this test)", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.deployments) == 0 || len(m.services) == 0 {
		t.Fatal("no Deployment or Service decoded")
	}
}

func TestPodsAreLockedDown(t *testing.T) {
	m := load(t)
	for _, w := range m.workloads() {
		sc := w.tmpl.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: runAsNonRoot is not set", w.name)
		}
		if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile is not RuntimeDefault", w.name)
		}
		for _, c := range w.tmpl.Spec.Containers {
			csc := c.SecurityContext
			if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s: readOnlyRootFilesystem is not true", w.name, c.Name)
			}
			if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: allowPrivilegeEscalation is not false", w.name, c.Name)
			}
			if csc == nil || csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
				t.Errorf("%s/%s: capabilities are not all dropped", w.name, c.Name)
			}
		}
	}
}

func TestReferencesResolve(t *testing.T) {
	m := load(t)
	for _, w := range m.workloads() {
		spec := w.tmpl.Spec
		if sa := spec.ServiceAccountName; sa == "" || !m.serviceAccounts[w.namespace+"/"+sa] {
			t.Errorf("%s: service account %q is not declared in namespace %q", w.name, sa, w.namespace)
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
		}
		for _, c := range w.claims {
			volumes[c] = true
		}
		for _, c := range spec.Containers {
			mounts := map[string]string{}
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s/%s: mounts volume %q that the pod does not declare", w.name, c.Name, vm.Name)
				}
				mounts[vm.MountPath] = vm.Name
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			// A service that talks to Vault over TLS needs the CA that signed Vault's certificate, from a mount.
			for k, v := range env {
				prefix, ok := strings.CutSuffix(k, "_VAULT_ADDR")
				if !ok || !strings.HasPrefix(v, "https://") {
					continue
				}
				ca := env[prefix+"_VAULT_CA_CERT"]
				if ca == "" {
					t.Errorf("%s/%s: %s is https but %s_VAULT_CA_CERT is not set", w.name, c.Name, k, prefix)
				} else if !underMount(ca, mounts) {
					t.Errorf("%s/%s: %s_VAULT_CA_CERT=%s is on no mounted volume", w.name, c.Name, prefix, ca)
				}
			}
			// The Vault Agent Injector adds the /vault/secrets volume to the pods it is asked to inject.
			if w.tmpl.Annotations["vault.hashicorp.com/agent-inject"] == "true" {
				mounts["/vault/secrets"] = "vault-agent"
			}
			for k, v := range env {
				if strings.HasSuffix(k, "_FILE") && !underMount(v, mounts) {
					t.Errorf("%s/%s: %s=%s is on no mounted volume", w.name, c.Name, k, v)
				}
			}
		}
	}
	for _, s := range m.services {
		if len(selecting(s.Namespace, s.Spec.Selector, m.serving())) == 0 {
			t.Errorf("Service/%s: its selector %v matches no Deployment or StatefulSet", s.Name, s.Spec.Selector)
		}
	}
	// A StatefulSet's pods get their DNS names from its governing Service: headless, and selecting them.
	for _, st := range m.statefulSets {
		ok := false
		for _, s := range m.services {
			ok = ok || s.Namespace == st.Namespace && s.Name == st.Spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone &&
				slices.Contains(selecting(s.Namespace, s.Spec.Selector, m.serving()), "StatefulSet/"+st.Name)
		}
		if !ok {
			t.Errorf("StatefulSet/%s: serviceName %q is no headless Service here selecting its pods", st.Name, st.Spec.ServiceName)
		}
	}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, w := range m.serving() {
			if w.namespace == p.Namespace && sel.Matches(labels.Set(w.tmpl.Labels)) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("PodDisruptionBudget/%s matches no Deployment or StatefulSet", p.Name)
		}
	}
	names := map[string]bool{}
	for _, s := range m.services {
		names[s.Name] = true
	}
	for _, in := range m.intentions {
		if in.Spec.Destination.Name != "*" && !names[in.Spec.Destination.Name] {
			t.Errorf("ServiceIntentions/%s: destination %q is no Service here", in.Name, in.Spec.Destination.Name)
		}
		for _, src := range in.Spec.Sources {
			if src.Name != "*" && !names[src.Name] {
				t.Errorf("ServiceIntentions/%s: source %q is no Service here", in.Name, src.Name)
			}
		}
	}
}

// TestConfigMapsAndSecretsExist: every ConfigMap and Secret a pod mounts (as a volume or a projected source) is
// declared in these manifests or named in external with who creates it.
func TestConfigMapsAndSecretsExist(t *testing.T) {
	m := load(t)
	used := map[string]bool{}
	for _, w := range m.workloads() {
		ref := func(kind, name string, declared map[string]bool) {
			key := w.namespace + "/" + name
			used[kind+"/"+key] = true
			if !declared[key] && external[kind+"/"+key] == "" {
				t.Errorf("%s: mounts %s %q, which no manifest declares in namespace %q and external does not name",
					w.name, kind, name, w.namespace)
			}
		}
		for _, v := range w.tmpl.Spec.Volumes {
			if v.ConfigMap != nil {
				ref("ConfigMap", v.ConfigMap.Name, m.configMaps)
			}
			if v.Secret != nil {
				ref("Secret", v.Secret.SecretName, m.secrets)
			}
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.ConfigMap != nil {
						ref("ConfigMap", src.ConfigMap.Name, m.configMaps)
					}
					if src.Secret != nil {
						ref("Secret", src.Secret.Name, m.secrets)
					}
				}
			}
		}
	}
	for key := range external {
		if !used[key] {
			t.Errorf("external names %s, which no pod mounts", key)
		}
	}
}

func TestEveryServingWorkloadHasADisruptionBudgetAndANetworkPolicy(t *testing.T) {
	m := load(t)
	for _, w := range m.serving() {
		pods := labels.Set(w.tmpl.Labels)
		covered := func(sel *metav1.LabelSelector) bool {
			s, err := metav1.LabelSelectorAsSelector(sel)
			return err == nil && s.Matches(pods)
		}
		hasPDB, hasPolicy := false, false
		for _, p := range m.pdbs {
			hasPDB = hasPDB || p.Namespace == w.namespace && covered(p.Spec.Selector)
		}
		for _, p := range m.policies {
			hasPolicy = hasPolicy || p.Namespace == w.namespace && covered(&p.Spec.PodSelector) &&
				slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		if !hasPDB {
			t.Errorf("%s: no PodDisruptionBudget", w.name)
		}
		if !hasPolicy {
			t.Errorf("%s: no NetworkPolicy limits its ingress", w.name)
		}
	}
}

// selecting returns the names of the workloads in namespace whose pods sel matches.
func selecting(namespace string, sel map[string]string, ws []workload) []string {
	var out []string
	for _, w := range ws {
		if w.namespace == namespace && len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.tmpl.Labels)) {
			out = append(out, w.name)
		}
	}
	return out
}

func underMount(path string, mounts map[string]string) bool {
	for m := range mounts {
		if path == m || strings.HasPrefix(path, strings.TrimSuffix(m, "/")+"/") {
			return true
		}
	}
	return false
}

// TestUpstreamsAreDeclaredAndAllowed: a mesh pod reaches another service only through an explicit upstream of
// its sidecar (consul.hashicorp.com/connect-service-upstreams, "name:port,…"). Every loopback URL in its
// environment (e.g. GATEWAY_ORDER_URL, ORDER_EVENTS_NATS_URL) is such an upstream's port, and every upstream is a
// Service here that an intention lets the pod's service (its service account) reach.
func TestUpstreamsAreDeclaredAndAllowed(t *testing.T) {
	m := load(t)
	allowed := map[string]bool{} // source→destination
	for _, in := range m.intentions {
		for _, src := range in.Spec.Sources {
			if src.Action == "allow" {
				allowed[src.Name+"→"+in.Spec.Destination.Name] = true
			}
		}
	}
	services := map[string]bool{}
	for _, s := range m.services {
		services[s.Namespace+"/"+s.Name] = true
	}
	for _, w := range m.workloads() {
		if w.tmpl.Annotations["consul.hashicorp.com/connect-inject"] != "true" {
			continue
		}
		upstreams := map[string]string{} // local port → service
		if v := w.tmpl.Annotations["consul.hashicorp.com/connect-service-upstreams"]; v != "" {
			for _, u := range strings.Split(v, ",") {
				parts := strings.Split(strings.TrimSpace(u), ":")
				if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
					t.Errorf("%s: upstream %q is not name:port", w.name, u)
					continue
				}
				upstreams[parts[1]] = parts[0]
				from := w.tmpl.Spec.ServiceAccountName
				if !services[w.namespace+"/"+parts[0]] {
					t.Errorf("%s: upstream %q is no Service here", w.name, parts[0])
				}
				if !allowed[from+"→"+parts[0]] {
					t.Errorf("%s: upstream %q, but no intention allows %s → %s", w.name, parts[0], from, parts[0])
				}
			}
		}
		for _, c := range w.tmpl.Spec.Containers {
			own := map[string]bool{}
			for _, p := range c.Ports {
				own[fmt.Sprint(p.ContainerPort)] = true
			}
			for _, e := range c.Env {
				u, err := url.Parse(e.Value)
				if err != nil || u.Scheme == "" || u.Hostname() != "127.0.0.1" || own[u.Port()] {
					continue
				}
				if upstreams[u.Port()] == "" {
					t.Errorf("%s/%s: %s=%s is no upstream of its sidecar (connect-service-upstreams)", w.name, c.Name, e.Name, e.Value)
				}
			}
		}
	}
}
