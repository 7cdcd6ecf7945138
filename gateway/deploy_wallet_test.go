package gateway_test

// The deploy kit's wiring of the wallet backend's token: each way to run
// the gateway gives it a wallet token (-wallet-token-file or
// SCENEPAY_WALLET_TOKEN; gateway/internal/opapi/auth.go) the way it gives
// the operator token, from a secret, a file or one variable of the
// environment, never a value in the repository, and never the operator
// token's own source; and settlement, which needs only the operator token,
// is not given it.

import (
	"os/exec"
	"strings"
	"testing"
)

func TestDeployWalletTokenCompose(t *testing.T) {
	docs := yamlDocs(t, "../deploy/docker-compose.yml", nil)
	services, _ := docs[0]["services"].(map[string]any)
	gw := jsonAt(services, "gateway", "environment")
	w := interpolated.FindStringSubmatch(jsonStr(gw, "SCENEPAY_WALLET_TOKEN"))
	op := interpolated.FindStringSubmatch(jsonStr(gw, "SCENEPAY_OPERATOR_TOKEN"))
	if w == nil || op == nil || w[1] == op[1] {
		t.Errorf("compose: the gateway's SCENEPAY_WALLET_TOKEN %q must be a ${VARIABLE:?...} of its own, not the operator token's %q",
			jsonStr(gw, "SCENEPAY_WALLET_TOKEN"), jsonStr(gw, "SCENEPAY_OPERATOR_TOKEN"))
	} else if !strings.Contains(w[0], ":?") {
		t.Errorf("compose: SCENEPAY_WALLET_TOKEN %q must fail when the variable is unset (${%s:?...})", w[0], w[1])
	}
	if v := jsonStr(services, "settlement", "environment", "SCENEPAY_WALLET_TOKEN"); v != "" {
		t.Errorf("compose: settlement is given the wallet token (%q)", v)
	}
}

func TestDeployWalletTokenKubernetes(t *testing.T) {
	docs := renderK8s(t)
	byKind := map[string]map[string]any{}
	configMaps := map[string]map[string]any{}
	for _, d := range docs {
		kind, name := jsonStr(d, "kind"), jsonStr(d, "metadata", "name")
		byKind[kind+"/"+name] = d
		if kind == "ConfigMap" {
			data, _ := d["data"].(map[string]any)
			configMaps[name] = data
		}
	}
	gw, st := byKind["StatefulSet/scenepay-gateway"], byKind["Deployment/scenepay-settlement"]
	if gw == nil || st == nil {
		t.Fatalf("rendered manifests lack the gateway StatefulSet or the settlement Deployment")
	}
	pod := jsonAt(gw, "spec", "template", "spec")
	c := jsonAt(pod, "containers", 0)
	env := k8sEnv(c, configMaps)
	if v, ok := env["SCENEPAY_WALLET_TOKEN"]; ok {
		t.Errorf("k8s: the gateway sets SCENEPAY_WALLET_TOKEN (%q); mount it from the Secret and set SCENEPAY_WALLET_TOKEN_FILE", v)
	}
	wallet := k8sSecretFile(pod, c, env["SCENEPAY_WALLET_TOKEN_FILE"])
	op := k8sSecretFile(pod, c, env["SCENEPAY_OPERATOR_TOKEN_FILE"])
	if wallet == "" || wallet == op {
		t.Errorf("k8s: the gateway reads its wallet token from secret %q (%s), its operator token from %q; want a Secret key of its own",
			wallet, env["SCENEPAY_WALLET_TOKEN_FILE"], op)
	}
	// The example Secret names the key, with a placeholder the gateway
	// refuses (not hex).
	secret := byKind["Secret/"+strings.Split(wallet, "/")[0]]
	key := strings.TrimPrefix(wallet, strings.Split(wallet, "/")[0]+"/")
	if v := jsonStr(secret, "stringData", key); v == "" || isHex(v) {
		t.Errorf("k8s: the example Secret's %q is %q; want a placeholder the gateway refuses", wallet, v)
	}
	stPod := jsonAt(st, "spec", "template", "spec")
	for _, v := range jsonList(stPod, "volumes") {
		for _, it := range jsonList(v, "secret", "items") {
			if jsonStr(v, "secret", "secretName")+"/"+jsonStr(it, "key") == wallet {
				t.Errorf("k8s: settlement mounts the wallet token %q", wallet)
			}
		}
	}
}

func TestDeployWalletTokenSystemd(t *testing.T) {
	gw := envFile(t, "../deploy/systemd/gateway.env.example")
	st := envFile(t, "../deploy/systemd/settlement.env.example")
	if v, ok := gw["SCENEPAY_WALLET_TOKEN"]; ok {
		t.Errorf("systemd: gateway.env holds the wallet token (%q); point SCENEPAY_WALLET_TOKEN_FILE at a file", v)
	}
	f := gw["SCENEPAY_WALLET_TOKEN_FILE"]
	if !strings.HasPrefix(f, "/etc/scenepay/") || f == gw["SCENEPAY_OPERATOR_TOKEN_FILE"] {
		t.Errorf("systemd: SCENEPAY_WALLET_TOKEN_FILE %q: want a file of its own under /etc/scenepay (the operator token's is %q)", f, gw["SCENEPAY_OPERATOR_TOKEN_FILE"])
	}
	for k, v := range st {
		if strings.Contains(k, "WALLET") || v == f {
			t.Errorf("systemd: settlement.env is given the wallet token (%s=%s)", k, v)
		}
	}
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return s != ""
}

// renderK8s renders deploy/k8s with kubectl kustomize (skipped without it).
func renderK8s(t *testing.T) []map[string]any {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed (its kustomize renders deploy/k8s)")
	}
	rendered, err := exec.Command(kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", "../deploy/k8s").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v", err)
	}
	return yamlDocs(t, "-", rendered)
}
