package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Each operator rotation runs in turn while clients keep ordering. Every acknowledged order must be in MySQL
// exactly once, and no client may see a failure.
func TestRotationsUnderLoad(t *testing.T) {
	rotations := []struct {
		name        string
		mayFail     bool
		check       func(t *testing.T, before rotationState)
		afterRotate func(t *testing.T)
	}{
		{name: "db-creds", check: checkUsersReplaced},
		{name: "db-root", check: checkAdminPasswordChanged},
		{name: "secret-id", afterRotate: forceOrderRelogin, check: checkLoggedInWithNewSecretID},
		{name: "transit-key", check: checkPIIOnNewestKey},
		{name: "gateway-cert", check: checkNewGatewayCertServed},
		{name: "connect-ca", check: checkConnectRootChanged},
		{name: "consul-token", check: checkConsulTokenReplaced},
	}
	for _, rot := range rotations {
		t.Run(rot.name, func(t *testing.T) {
			before := captureState(t)
			l := startLoad(t, "rot-"+rot.name, 4)
			time.Sleep(2 * time.Second)
			if out, err := stack.Script(5*time.Minute, "rotate.sh", rot.name); err != nil {
				l.stop()
				t.Fatalf("rotate.sh %s: %v\n%s", rot.name, err, out)
			}
			if rot.afterRotate != nil {
				rot.afterRotate(t)
			}
			time.Sleep(6 * time.Second)
			r := l.stop()
			stored := checkStoredOnce(t, r, "rot-"+rot.name)
			t.Logf("rotation %-12s sent %d, acknowledged %d, in MySQL %d, client-visible failures %d",
				rot.name, r.Sent, r.Acked, stored, r.Failures)
			if r.Acked == 0 {
				t.Fatal("no order was acknowledged")
			}
			if r.Failures > 0 && !rot.mayFail {
				t.Errorf("%d failures during the %s rotation; first: %v", r.Failures, rot.name, r.FirstFailures)
			}
			rot.check(t, before)
		})
	}
}

// rotationState is what a check compares against.
type rotationState struct {
	users             []string
	logins            int
	certSerial        string
	rootID            string
	adminHash         string
	secretIDAccessors []string
	consulAccessor    string
	sidecarPid        int
}

func captureState(t *testing.T) rotationState {
	pid, _ := stack.Pid("sidecar-order-1")
	return rotationState{users: orderUsers(t), logins: countLogLines(t, "order", "logged in to vault"),
		certSerial: gatewayCertSerial(t), rootID: activeConnectRoot(t), adminHash: adminPasswordHash(t),
		secretIDAccessors: secretIDAccessors(t), consulAccessor: consulAccessor(t, "order-1"), sidecarPid: pid}
}

func countLogLines(t *testing.T, process, msg string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stack.Dir, "logs", process+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"msg":"`+msg+`"`)
}

// After a revoke the old users are gone and new connections log in as new ones.
func checkUsersReplaced(t *testing.T, before rotationState) {
	if len(before.users) == 0 {
		t.Fatal("no order connection seen before the revoke")
	}
	for _, u := range before.users {
		if userExists(t, u) {
			t.Errorf("revoked user %s still exists", u)
		}
	}
	eventually(t, 10*time.Second, func() error {
		for _, u := range orderUsers(t) {
			if !contains(before.users, u) {
				return nil
			}
		}
		return fmt.Errorf("order is connected only as %v, the revoked users", orderUsers(t))
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// After rotate-root the admin's password differs, and Vault still holds the working one: a second rotation,
// which must log in with it, succeeds and changes it again.
func checkAdminPasswordChanged(t *testing.T, before rotationState) {
	after := adminPasswordHash(t)
	if after == before.adminHash {
		t.Fatalf("vault_admin's password hash is unchanged after rotate-root")
	}
	if out, err := stack.Script(time.Minute, "rotate.sh", "db-root"); err != nil {
		t.Fatalf("a second rotate-root: %v\n%s", err, out)
	}
	if again := adminPasswordHash(t); again == after {
		t.Errorf("a second rotate-root left the password hash unchanged")
	}
}

func adminPasswordHash(t *testing.T) string {
	t.Helper()
	var hash string
	if err := stack.Observer.QueryRow(`SELECT authentication_string FROM mysql.user WHERE User = 'vault_admin'`).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	return hash
}

// secretIDAccessors lists the accessors of the secret_ids delivered to order's replicas.
func secretIDAccessors(t *testing.T) []string {
	return append(secretIDAccessorsOf(t, "order-1"), secretIDAccessorsOf(t, "order-2")...)
}

// secretIDAccessorsOf lists the accessors of the live secret_ids of AppRole order delivered to instance. A
// secret_id destroyed between the list and its lookup (404) is not live; any other lookup failure fails the
// test, so a list it could not check never passes for an empty one.
func secretIDAccessorsOf(t *testing.T, instance string) []string {
	t.Helper()
	v := vaultOperator(t)
	sec, err := v.Logical().List("auth/approle/role/order/secret-id")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if sec == nil {
		return nil
	}
	for _, k := range sec.Data["keys"].([]any) {
		info, found := lookupSecretIDAccessor(t, k.(string))
		if !found {
			continue
		}
		if md, _ := info.Data["metadata"].(map[string]any); md["instance"] == instance {
			out = append(out, k.(string))
		}
	}
	return out
}

// lookupSecretIDAccessor looks up a secret_id of AppRole order by its accessor: found false when Vault answers
// that no such secret_id exists (404), the test fails on any other error.
func lookupSecretIDAccessor(t *testing.T, accessor string) (*vault.Secret, bool) {
	t.Helper()
	info, err := vaultOperator(t).Logical().Write("auth/approle/role/order/secret-id-accessor/lookup",
		map[string]any{"secret_id_accessor": accessor})
	if vaultStatus(err) == http.StatusNotFound {
		return nil, false
	}
	if err != nil {
		t.Fatalf("look up secret_id accessor %s: %v", accessor, err)
	}
	if info == nil || info.Data == nil {
		t.Fatalf("look up secret_id accessor %s: an empty answer", accessor)
	}
	return info, true
}

// vaultStatus is the HTTP status of a Vault API error (0 when err is not an answer of Vault's).
func vaultStatus(err error) int {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func consulAccessor(t *testing.T, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stack.Dir, "credentials", id, "consul-token.accessor"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// forceOrderRelogin revokes order's Vault token (and with it its database leases), so the service must log
// in again, which it can only do with the new secret_id: the old one was destroyed by the rotation.
func forceOrderRelogin(t *testing.T) {
	if out, err := stack.Tool("vault", nil, "lease", "revoke", "-prefix", "auth/approle/login"); err != nil {
		t.Fatalf("revoke order's token: %v\n%s", err, out)
	}
}

// Every secret_id order held before is destroyed (a stolen copy is worthless), and order logged in again after
// its token was revoked: with the new one, the only one left.
func checkLoggedInWithNewSecretID(t *testing.T, before rotationState) {
	if len(before.secretIDAccessors) == 0 {
		t.Fatal("order had no secret_id before the rotation")
	}
	// Each old one is looked up by its accessor: Vault must answer that it does not exist.
	for _, old := range before.secretIDAccessors {
		if _, found := lookupSecretIDAccessor(t, old); found {
			t.Errorf("secret_id %s still exists after the rotation", old)
		}
	}
	eventually(t, 20*time.Second, func() error {
		if n := countLogLines(t, "order", "logged in to vault"); n <= before.logins {
			return fmt.Errorf("order logged in %d times, as many as before the new secret_id", n)
		}
		return nil
	})
}

// The instance's previous Consul token no longer exists, its sidecar is a new process (with the new token), and
// the mesh carries orders.
func checkConsulTokenReplaced(t *testing.T, before rotationState) {
	if now := consulAccessor(t, "order-1"); now == before.consulAccessor {
		t.Fatalf("order-1's consul token accessor is unchanged: %s", now)
	}
	prov := provisioner(t)
	if tok, _, err := prov.ACL().TokenRead(consulAccessor(t, "order-1"), nil); err != nil || tok == nil {
		t.Fatalf("reading the new token (the positive control for the next check): %v", err)
	}
	if _, _, err := prov.ACL().TokenRead(before.consulAccessor, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("the previous token %s: %v; want it deleted (ACL not found)", before.consulAccessor, err)
	}
	if pid, _ := stack.Pid("sidecar-order-1"); pid == before.sidecarPid {
		t.Errorf("order-1's sidecar is still pid %d, started with the old token", pid)
	}
	if status, _, err := placeOrder(t, "", orderBody("After token rotation")); status != http.StatusCreated {
		t.Errorf("after the token rotation: %d %v", status, err)
	}
}

// The transit key is on a new version; stored data keys are rewrapped to it (a second rewrap catches orders
// sealed meanwhile with the previous data key); PII is ciphertext in MySQL and plaintext through the API.
func checkPIIOnNewestKey(t *testing.T, _ rotationState) {
	out, err := stack.Tool("vault", nil, "read", "-field=latest_version", "transit/keys/orders-pii")
	if err != nil {
		t.Fatalf("read transit key: %v %s", err, out)
	}
	latest := "vault:v" + strings.TrimSpace(out) + ":"
	if out, err := stack.Script(5*time.Minute, "rotate.sh", "rewrap-pii"); err != nil {
		t.Fatalf("rewrap: %v\n%s", err, out)
	}
	var stale, total int
	if err := stack.Observer.QueryRow(`SELECT COUNT(*), COALESCE(SUM(pii_key IS NOT NULL AND pii_key NOT LIKE ?), 0) FROM orders`, latest+"%").
		Scan(&total, &stale); err != nil {
		t.Fatal(err)
	}
	if stale != 0 {
		t.Errorf("%d of %d orders have PII data keys not on %s after rewrap", stale, total, latest)
	}
	// Rows at rest in plaintext count too: no order, whatever its key, holds the customer's phone or address as
	// sent (every test order carries testPhone and testAddress) or lacks a data key.
	var plaintext int
	if err := stack.Observer.QueryRow(`SELECT COUNT(*) FROM orders WHERE customer_phone = ? OR customer_address = ? OR pii_key IS NULL`,
		testPhone, testAddress).Scan(&plaintext); err != nil {
		t.Fatal(err)
	}
	if plaintext != 0 || total == 0 {
		t.Errorf("%d of %d orders hold PII in plaintext or without a data key", plaintext, total)
	}

	_, p, err := placeOrder(t, "", orderBody("PII check"))
	if err != nil {
		t.Fatal(err)
	}
	var phone, address, key, tracking string
	if err := stack.Observer.QueryRow(`SELECT customer_phone, customer_address, pii_key, tracking_token FROM orders WHERE id = ?`, p.ID).
		Scan(&phone, &address, &key, &tracking); err != nil {
		t.Fatal(err)
	}
	if phone == testPhone || strings.Contains(address, "Secretive") || !strings.HasPrefix(key, "vault:v") {
		t.Errorf("MySQL holds phone %q, address %q, key %q: want ciphertext and a wrapped data key", phone, address, key)
	}
	// The tracking token opens the order's stream: at rest it is sealed like the PII, never the token itself.
	if p.TrackingToken == "" || tracking == "" || strings.Contains(tracking, p.TrackingToken) {
		t.Errorf("MySQL holds the tracking token %q for the customer's %q: want ciphertext", tracking, p.TrackingToken)
	}
	req, _ := http.NewRequest("GET", stack.GatewayURL+"/pizza/"+p.ID, nil)
	req.Header.Set("X-Tracking-Token", p.TrackingToken)
	resp, err := stack.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Customer struct{ Phone, Address string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Customer.Phone != testPhone || got.Customer.Address != testAddress {
		t.Errorf("GET /pizza/%s: %+v %v; want the plaintext phone and address", p.ID, got.Customer, err)
	}
}

func gatewayCertSerial(t *testing.T) string {
	t.Helper()
	resp, err := stack.HTTP.Get(stack.GatewayURL + "/health/livez")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

func checkNewGatewayCertServed(t *testing.T, before rotationState) {
	eventually(t, 10*time.Second, func() error {
		// New connections see the new certificate; the shared client's idle ones would not.
		stack.HTTP.CloseIdleConnections()
		if s := gatewayCertSerial(t); s == before.certSerial {
			return fmt.Errorf("gateway still serves certificate %s", s)
		}
		return nil
	})
}

func activeConnectRoot(t *testing.T) string {
	t.Helper()
	roots, _, err := consul(t).Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	return roots.ActiveRootID
}

func checkConnectRootChanged(t *testing.T, before rotationState) {
	if now := activeConnectRoot(t); now == before.rootID {
		t.Errorf("active Connect root is still %s", now)
	}
	// Orders flow on the new root's leaves.
	eventually(t, 30*time.Second, func() error {
		status, _, err := placeOrder(t, "", orderBody("After CA rotation"))
		if status != http.StatusCreated {
			return fmt.Errorf("after the CA rotation: %d %v", status, err)
		}
		return nil
	})
}
