// Package check decodes every manifest in deploy/kubernetes strictly against the Kubernetes API types and checks
// that they refer to each other correctly. A module of its own, so k8s.io/api never enters the product's go.mod.
package check

import (
	"bytes"
	"fmt"
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
	services        []corev1.Service
	deployments     []appsv1.Deployment
	jobs            []batchv1.Job
	pdbs            []policyv1.PodDisruptionBudget
	policies        []networkingv1.NetworkPolicy
	intentions      []serviceIntentions
}

// workload is a pod template with the name and namespace of what runs it.
type workload struct {
	name, namespace string
	tmpl            corev1.PodTemplateSpec
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.deployments {
		out = append(out, workload{"Deployment/" + d.Name, d.Namespace, d.Spec.Template})
	}
	for _, j := range m.jobs {
		out = append(out, workload{"Job/" + j.Name, j.Namespace, j.Spec.Template})
	}
	return out
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	m := &manifests{serviceAccounts: map[string]bool{}}
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
			case "v1/Service":
				var o corev1.Service
				strict(&o)
				m.services = append(m.services, o)
			case "apps/v1/Deployment":
				var o appsv1.Deployment
				strict(&o)
				m.deployments = append(m.deployments, o)
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
		if len(selecting(s.Spec.Selector, m.deployments)) == 0 {
			t.Errorf("Service/%s: its selector %v matches no Deployment", s.Name, s.Spec.Selector)
		}
	}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range m.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("PodDisruptionBudget/%s matches no Deployment", p.Name)
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

func TestEveryDeploymentHasADisruptionBudgetAndANetworkPolicy(t *testing.T) {
	m := load(t)
	for _, d := range m.deployments {
		pods := labels.Set(d.Spec.Template.Labels)
		covered := func(sel *metav1.LabelSelector) bool {
			s, err := metav1.LabelSelectorAsSelector(sel)
			return err == nil && s.Matches(pods)
		}
		hasPDB, hasPolicy := false, false
		for _, p := range m.pdbs {
			hasPDB = hasPDB || covered(p.Spec.Selector)
		}
		for _, p := range m.policies {
			hasPolicy = hasPolicy || covered(&p.Spec.PodSelector) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		if !hasPDB {
			t.Errorf("Deployment/%s: no PodDisruptionBudget", d.Name)
		}
		if !hasPolicy {
			t.Errorf("Deployment/%s: no NetworkPolicy limits its ingress", d.Name)
		}
	}
}

func selecting(sel map[string]string, ds []appsv1.Deployment) []string {
	var out []string
	for _, d := range ds {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d.Name)
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
