package gateway_test

// The deploy kit's wiring of reconciliation: in each way to run scenepay
// (docker-compose, the Kubernetes manifests as kustomize renders them, the
// systemd units and their settings files) settlement must ask every
// gateway's operator API for journal totals, send the token that gateway
// really uses, and read it from a secret or a file (never a literal in the
// repository); and each gateway must keep its journal at least as long as
// settlement's lookback reaches back (clearing.ReconcileLookbackDays
// business days before now, so up to one more day to the start of the
// oldest window), or the oldest windows of the lookback are given up as not
// covered after every settlement restart.
//
// YAML is read through yq (Debian's yq, a jq wrapper) and the manifests
// are rendered by kubectl kustomize; a test skips when its tool is missing.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"scenepay/settlement/clearing"
)

// journalReach is how far back settlement's reconciliation lookback reaches:
// the start of the window that held the instant ReconcileLookbackDays ago.
const journalReach = time.Duration(clearing.ReconcileLookbackDays+1) * 24 * time.Hour

// yamlDocs runs yq over the YAML in src (a file path, or "-" for stdin)
// and returns its documents as JSON trees.
func yamlDocs(t *testing.T, src string, stdin []byte) []map[string]any {
	t.Helper()
	yq, err := exec.LookPath("yq")
	if err != nil {
		t.Skip("yq not installed (apt-get install yq)")
	}
	cmd := exec.Command(yq, "-c", ".", src)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("yq %s: %v\n%s", src, err, stderr.String())
	}
	var docs []map[string]any
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("yq %s: %v", src, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// path walks a JSON tree by map keys and list indexes.
func jsonAt(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func jsonStr(v any, keys ...any) string {
	s, _ := jsonAt(v, keys...).(string)
	return s
}

func jsonList(v any, keys ...any) []any {
	l, _ := jsonAt(v, keys...).([]any)
	return l
}

// checkRetain fails unless value is a duration covering journalReach.
func checkRetain(t *testing.T, where, value string) {
	t.Helper()
	d, err := time.ParseDuration(value)
	if err != nil {
		t.Errorf("%s: SCENEPAY_JOURNAL_RETAIN %q: %v (set it explicitly)", where, value, err)
		return
	}
	if d < journalReach {
		t.Errorf("%s: SCENEPAY_JOURNAL_RETAIN %s is shorter than settlement's lookback reaches back (%s)", where, d, journalReach)
	}
}

// gatewayURLs splits a SCENEPAY_JOURNAL_GATEWAYS value into host:port.
func gatewayURLs(t *testing.T, where, value string) []string {
	t.Helper()
	var out []string
	for _, s := range strings.Split(value, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Port() == "" {
			t.Errorf("%s: journal gateway %q is not an http(s)://host:port base URL", where, s)
			continue
		}
		out = append(out, u.Host)
	}
	if len(out) == 0 {
		t.Errorf("%s: settlement names no journal gateway (SCENEPAY_JOURNAL_GATEWAYS %q)", where, value)
	}
	return out
}

// interpolated matches a compose variable reference, ${NAME...}.
var interpolated = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}$`)

func TestDeployReconciliationCompose(t *testing.T) {
	docs := yamlDocs(t, "../deploy/docker-compose.yml", nil)
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml: %d documents", len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	st := jsonAt(services, "settlement", "environment")
	gw := jsonAt(services, "gateway", "environment")
	if st == nil || gw == nil {
		t.Fatalf("docker-compose.yml: no environment map for settlement or gateway")
	}
	checkRetain(t, "compose gateway", jsonStr(gw, "SCENEPAY_JOURNAL_RETAIN"))
	for _, host := range gatewayURLs(t, "compose settlement", jsonStr(st, "SCENEPAY_JOURNAL_GATEWAYS")) {
		name, port, _ := net.SplitHostPort(host)
		env := jsonAt(services, name, "environment")
		if env == nil || jsonAt(services, name, "build", "dockerfile") != "deploy/docker/Dockerfile" {
			t.Errorf("compose: journal gateway %s is not a gateway service", host)
			continue
		}
		if _, p, _ := net.SplitHostPort(jsonStr(env, "SCENEPAY_HTTP_LISTEN")); p != port {
			t.Errorf("compose: journal gateway %s, but service %s listens on %q", host, name, jsonStr(env, "SCENEPAY_HTTP_LISTEN"))
		}
		// Settlement sends the token this gateway uses: one variable
		// of the environment (.env), never a value in the file.
		op, tok := interpolated.FindStringSubmatch(jsonStr(env, "SCENEPAY_OPERATOR_TOKEN")), interpolated.FindStringSubmatch(jsonStr(st, "SCENEPAY_GATEWAY_TOKEN"))
		if op == nil || tok == nil || op[1] != tok[1] {
			t.Errorf("compose: gateway %s SCENEPAY_OPERATOR_TOKEN %q and settlement SCENEPAY_GATEWAY_TOKEN %q must name the same ${VARIABLE}",
				name, jsonStr(env, "SCENEPAY_OPERATOR_TOKEN"), jsonStr(st, "SCENEPAY_GATEWAY_TOKEN"))
		}
	}
}

// k8sEnv is a container's environment: literal values, and where the
// others come from ("secret:name/key", "configmap:name/key", "field:...").
func k8sEnv(container any, configMaps map[string]map[string]any) map[string]string {
	env := map[string]string{}
	for _, from := range jsonList(container, "envFrom") {
		for k, v := range configMaps[jsonStr(from, "configMapRef", "name")] {
			s, _ := v.(string)
			env[k] = s
		}
	}
	for _, e := range jsonList(container, "env") {
		name := jsonStr(e, "name")
		switch {
		case jsonAt(e, "valueFrom", "secretKeyRef") != nil:
			env[name] = "secret:" + jsonStr(e, "valueFrom", "secretKeyRef", "name") + "/" + jsonStr(e, "valueFrom", "secretKeyRef", "key")
		case jsonAt(e, "valueFrom", "configMapKeyRef") != nil:
			env[name] = "configmap:" + jsonStr(e, "valueFrom", "configMapKeyRef", "name") + "/" + jsonStr(e, "valueFrom", "configMapKeyRef", "key")
		case jsonAt(e, "valueFrom") != nil:
			env[name] = "field:" + jsonStr(e, "valueFrom", "fieldRef", "fieldPath")
		default:
			env[name] = jsonStr(e, "value")
		}
	}
	return env
}

// k8sSecretFile returns "secretName/key" of the secret file a pod's
// container sees at file, or "".
func k8sSecretFile(pod, container any, file string) string {
	for _, m := range jsonList(container, "volumeMounts") {
		dir := strings.TrimSuffix(jsonStr(m, "mountPath"), "/") + "/"
		if !strings.HasPrefix(file, dir) {
			continue
		}
		rel := strings.TrimPrefix(file, dir)
		for _, v := range jsonList(pod, "volumes") {
			if jsonStr(v, "name") != jsonStr(m, "name") || jsonAt(v, "secret") == nil {
				continue
			}
			items := jsonList(v, "secret", "items")
			if len(items) == 0 {
				return jsonStr(v, "secret", "secretName") + "/" + rel
			}
			for _, it := range items {
				if jsonStr(it, "path") == rel {
					return jsonStr(v, "secret", "secretName") + "/" + jsonStr(it, "key")
				}
			}
		}
	}
	return ""
}

func TestDeployReconciliationKubernetes(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed (its kustomize renders deploy/k8s)")
	}
	rendered, err := exec.Command(kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", "../deploy/k8s").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v", err)
	}
	docs := yamlDocs(t, "-", rendered)
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
		t.Fatalf("rendered manifests lack the gateway StatefulSet or the settlement Deployment (%d documents)", len(docs))
	}
	gwPod, stPod := jsonAt(gw, "spec", "template", "spec"), jsonAt(st, "spec", "template", "spec")
	gwC, stC := jsonAt(gwPod, "containers", 0), jsonAt(stPod, "containers", 0)
	gwEnv, stEnv := k8sEnv(gwC, configMaps), k8sEnv(stC, configMaps)
	checkRetain(t, "k8s gateway", gwEnv["SCENEPAY_JOURNAL_RETAIN"])

	// Every gateway pod, by its stable name under the headless service.
	ns := jsonStr(gw, "metadata", "namespace")
	replicas, _ := jsonAt(gw, "spec", "replicas").(float64)
	var httpPort string
	for _, p := range jsonList(gwC, "ports") {
		if jsonStr(p, "name") == "http" {
			httpPort = strconv.Itoa(int(jsonAt(p, "containerPort").(float64)))
		}
	}
	asked := map[string]bool{}
	for _, host := range gatewayURLs(t, "k8s settlement", stEnv["SCENEPAY_JOURNAL_GATEWAYS"]) {
		asked[host] = true
	}
	for i := 0; i < int(replicas); i++ {
		want := net.JoinHostPort("scenepay-gateway-"+strconv.Itoa(i)+"."+jsonStr(gw, "spec", "serviceName")+"."+ns+".svc.cluster.local", httpPort)
		if !asked[want] {
			t.Errorf("k8s: settlement does not ask gateway pod %d (%s); it asks %v", i, want, asked)
		}
		delete(asked, want)
	}
	if len(asked) > 0 {
		t.Errorf("k8s: settlement asks %v, which is no gateway pod (replicas %d)", asked, int(replicas))
	}
	if hs := byKind["Service/"+jsonStr(gw, "spec", "serviceName")]; hs == nil || jsonStr(hs, "spec", "clusterIP") != "None" {
		t.Errorf("k8s: the gateway's serviceName %q is not a headless Service", jsonStr(gw, "spec", "serviceName"))
	}

	// The token: the same key of the same Secret, as a file.
	if v, ok := stEnv["SCENEPAY_GATEWAY_TOKEN"]; ok {
		t.Errorf("k8s: settlement sets SCENEPAY_GATEWAY_TOKEN (%q); mount the gateways' Secret and set SCENEPAY_GATEWAY_TOKEN_FILE", v)
	}
	gwTok := k8sSecretFile(gwPod, gwC, gwEnv["SCENEPAY_OPERATOR_TOKEN_FILE"])
	stTok := k8sSecretFile(stPod, stC, stEnv["SCENEPAY_GATEWAY_TOKEN_FILE"])
	if gwTok == "" || stTok != gwTok {
		t.Errorf("k8s: the gateway reads its operator token from secret %q (%s), settlement from %q (%s); want the same Secret key",
			gwTok, gwEnv["SCENEPAY_OPERATOR_TOKEN_FILE"], stTok, stEnv["SCENEPAY_GATEWAY_TOKEN_FILE"])
	}
	// The settlement pod mounts only the token of the gateway's Secret,
	// not its master key.
	for _, v := range jsonList(stPod, "volumes") {
		if jsonStr(v, "secret", "secretName") == strings.Split(gwTok, "/")[0] && len(jsonList(v, "secret", "items")) != 1 {
			t.Errorf("k8s: settlement mounts the whole gateway Secret %q; mount the operator token only", jsonStr(v, "secret", "secretName"))
		}
	}
}

// envFile reads KEY=VALUE lines (comments and blanks skipped).
func envFile(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=VALUE", file, line)
			continue
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// unitSetting returns the values of key= in a unit file.
func unitSetting(t *testing.T, file, key string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestDeployReconciliationSystemd(t *testing.T) {
	gw := envFile(t, "../deploy/systemd/gateway.env.example")
	st := envFile(t, "../deploy/systemd/settlement.env.example")
	checkRetain(t, "systemd gateway.env", gw["SCENEPAY_JOURNAL_RETAIN"])
	hosts := gatewayURLs(t, "systemd settlement.env", st["SCENEPAY_JOURNAL_GATEWAYS"])
	if len(hosts) != 1 || hosts[0] != gw["SCENEPAY_HTTP_LISTEN"] {
		t.Errorf("systemd: settlement asks %v, the gateway listens on %q", hosts, gw["SCENEPAY_HTTP_LISTEN"])
	}
	if v, ok := st["SCENEPAY_GATEWAY_TOKEN"]; ok {
		t.Errorf("systemd: settlement.env holds the token (%q); point SCENEPAY_GATEWAY_TOKEN_FILE at the gateway's token file", v)
	}
	if st["SCENEPAY_GATEWAY_TOKEN_FILE"] == "" || st["SCENEPAY_GATEWAY_TOKEN_FILE"] != gw["SCENEPAY_OPERATOR_TOKEN_FILE"] {
		t.Errorf("systemd: settlement reads the token from %q, the gateway from %q", st["SCENEPAY_GATEWAY_TOKEN_FILE"], gw["SCENEPAY_OPERATOR_TOKEN_FILE"])
	}
	if u, err := url.Parse(st["SCENEPAY_SETTLEMENT_DB"]); err != nil || u.User == nil {
		t.Errorf("systemd: SCENEPAY_SETTLEMENT_DB %q: %v", st["SCENEPAY_SETTLEMENT_DB"], err)
	} else if _, has := u.User.Password(); has {
		t.Errorf("systemd: SCENEPAY_SETTLEMENT_DB carries a password; it belongs in PGPASSFILE")
	}

	// The units read these files, run as the same user (the token file is
	// the gateway's, mode 0400), and pass systemd's own check.
	units := map[string]string{"scenepay-gateway.service": "/etc/scenepay/gateway.env", "scenepay-settlement.service": "/etc/scenepay/settlement.env"}
	for unit, envPath := range units {
		file := filepath.Join("../deploy/systemd", unit)
		if got := unitSetting(t, file, "EnvironmentFile"); len(got) != 1 || got[0] != envPath {
			t.Errorf("%s: EnvironmentFile %v, want %s", unit, got, envPath)
		}
		if got := unitSetting(t, file, "User"); len(got) != 1 || got[0] != "scenepay" {
			t.Errorf("%s: User %v, want scenepay", unit, got)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units not verified")
		return
	}
	dir := t.TempDir()
	for unit := range units {
		raw, err := os.ReadFile(filepath.Join("../deploy/systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		// verify wants the ExecStart binary to exist.
		text := regexp.MustCompile(`/usr/local/bin/scenepay-[a-z]+`).ReplaceAllString(string(raw), "/bin/true")
		if err := os.WriteFile(filepath.Join(dir, unit), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(analyze, "verify", filepath.Join(dir, unit)).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// The broker, one thread that every message passes through, has CPU
// priority over the other services where they share a machine: a CPU
// weight above the default in the compose file, and a negative nice with a
// raised weight in the systemd drop-in (which make bench-e2e also reads).
func TestDeployBrokerPriority(t *testing.T) {
	docs := yamlDocs(t, "../deploy/docker-compose.yml", nil)
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml: %d documents", len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	if shares, _ := jsonAt(services, "mosquitto", "cpu_shares").(float64); shares <= 1024 {
		t.Errorf("compose: mosquitto cpu_shares %v, want above the default 1024", jsonAt(services, "mosquitto", "cpu_shares"))
	}
	unit, err := os.ReadFile("../deploy/systemd/mosquitto.service.d/scenepay.conf")
	if err != nil {
		t.Fatal(err)
	}
	var nice, weight string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "Nice="); ok {
			nice = v
		}
		if v, ok := strings.CutPrefix(line, "CPUWeight="); ok {
			weight = v
		}
	}
	if n, err := strconv.Atoi(nice); err != nil || n >= 0 || n < -20 {
		t.Errorf("mosquitto drop-in: Nice=%q, want -20..-1", nice)
	}
	if w, err := strconv.Atoi(weight); err != nil || w <= 100 {
		t.Errorf("mosquitto drop-in: CPUWeight=%q, want above the default 100", weight)
	}
}
