package gateway_test

// The deploy kit (deploy/) names metrics in PromQL: the Grafana dashboard's
// queries and the alert rules. A renamed or misspelled metric there fails
// silently in production (an empty panel, an alert that can never fire), so
// these tests hold every name against the catalogue the processes really
// serve: an engine, ingress, settlement handoff and operator API run in
// process and the gateway's /metrics is scraped, exactly as Prometheus would;
// settlement's names come from the settlement process itself, built and run
// on a scratch store with a journal gateway configured (so that the
// reconciliation metrics exist) and scraped after its first scheduler pass.
// The process, not the table in docs/settlement.md, because a table can
// drift from the code and the code is what Prometheus scrapes.
//
// The tests are named TestDeploy* so that `go test -run Deploy ./gateway/`
// (the deploy kit's own check) runs all of them.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/ingress"
	"scenepay/gateway/internal/opapi"
	"scenepay/gateway/internal/testkit"
	"scenepay/settlement/store"
)

const (
	dashboardPath = "../deploy/grafana/scenepay.json"
	alertsPath    = "../deploy/prometheus/alerts.yml"
)

// scrapeCatalogue runs a gateway (engine, MQTT ingress on the test broker,
// settlement handoff, operator API) wired like cmd/gateway and returns the
// metric names of its /metrics, with the _bucket, _sum and _count series of
// each histogram and summary.
func scrapeCatalogue(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	topics := testkit.Topics()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Topics = topics
	cfg.Shards = 2
	cfg.Metrics = engine.NewMetrics(reg)
	eng, err := engine.Open(cfg, []byte(testkit.RandHex(32)))
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	defer func() {
		if err := eng.Close(); err != nil {
			t.Errorf("engine close: %v", err)
		}
	}()
	in, err := ingress.Start(ingress.Config{
		BrokerURL: testkit.MQTTURL(), ClientID: "gw-kit-" + testkit.RandHex(4), Conns: 1, Topics: topics, Registerer: reg,
	}, eng.HandleMessage)
	if err != nil {
		t.Fatalf("ingress: %v", err)
	}
	defer in.Close()
	eng.SetPublisher(in)
	// The handoff registers its metrics in New; it is not run, and its
	// store is never opened (the catalogue needs names, not batches).
	if _, err := handoff.New(handoff.Config{
		Source: "gw-kit", Journal: eng.Journal(), Entry: engine.EntryRecords, Registerer: reg,
		Store: handoff.Lazy(func(context.Context) (store.Store, error) {
			return nil, errors.New("deploy kit: the settlement store is not opened")
		}),
		Scene: func(string) (string, bool) { return "", false },
	}); err != nil {
		t.Fatalf("handoff: %v", err)
	}
	api := opapi.New(opapi.Config{Token: testkit.RandHex(16), Gatherer: reg, Ready: in.Connected}, eng)
	if err := api.Listen("127.0.0.1:0"); err != nil {
		t.Fatalf("operator API: %v", err)
	}
	defer api.Close()

	resp, err := http.Get("http://" + api.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, err %v", resp.StatusCode, err)
	}
	return parseCatalogue(string(body))
}

// settlementServing is the settlement process's log line that names the
// address it serves on.
var settlementServing = regexp.MustCompile(`msg="settlement: serving" addr=(\S+)`)

// settlementCatalogue returns the metric names the settlement process
// serves: cmd/settlement built and run on a SQLite store in a scratch
// directory, with one journal gateway configured (nothing is settled, so it
// is never asked) so that the reconciliation metrics are registered, and
// scraped once /readyz says its first scheduler pass is done (labelled
// gauges such as scenepay_settlement_window_state have no series before).
func settlementCatalogue(t *testing.T) map[string]bool {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the settlement process: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "settlement")
	if out, err := exec.Command(goTool, "build", "-o", bin, "scenepay/settlement/cmd/settlement").CombinedOutput(); err != nil {
		t.Fatalf("go build scenepay/settlement/cmd/settlement: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-db", filepath.Join(dir, "settlement.db"), "-data-dir", dir, "-listen", "127.0.0.1:0",
		"-journal-gateways", "http://127.0.0.1:9")
	cmd.Env = append(os.Environ(), "SCENEPAY_GATEWAY_TOKEN=deploy-kit")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start settlement: %v", err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	addr := make(chan string, 1)
	var logMu sync.Mutex
	var logged strings.Builder // the log so far, for a failure message
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := settlementServing.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
			logMu.Lock()
			logged.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("settlement did not log its address:\n%s", logged.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("settlement at %s not ready: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("settlement scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("settlement scrape: status %d, err %v", resp.StatusCode, err)
	}
	return parseCatalogue(string(body))
}

// parseCatalogue reads the "# TYPE name kind" lines of a text exposition.
func parseCatalogue(exposition string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		if f[3] == "histogram" || f[3] == "summary" {
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
			if f[3] == "histogram" {
				names[f[2]+"_bucket"] = true
			}
		}
	}
	return names
}

// scenepayName matches the project's metric names inside PromQL. Only the
// project's own names are checked: up, go_* and process_* come from
// Prometheus and the client library.
var scenepayName = regexp.MustCompile(`scenepay_[a-zA-Z0-9_:]*`)

// metricNames returns the project metric names an expression uses.
func metricNames(expr string) []string {
	return scenepayName.FindAllString(expr, -1)
}

// unknownMetrics returns the names in expr that the catalogue lacks.
func unknownMetrics(expr string, catalogue map[string]bool) []string {
	var out []string
	for _, n := range metricNames(expr) {
		if !catalogue[n] {
			out = append(out, n)
		}
	}
	return out
}

func TestDeployUnknownMetricsFindsMisspelledNames(t *testing.T) {
	cat := parseCatalogue(`# HELP scenepay_gateway_requests_total x
# TYPE scenepay_gateway_requests_total counter
# TYPE scenepay_journal_fsync_seconds histogram
# TYPE go_goroutines gauge
`)
	for _, tc := range []struct {
		expr string
		want string
	}{
		{`sum by (code) (rate(scenepay_gateway_requests_total{job="x"}[5m]))`, ""},
		{`histogram_quantile(0.99, sum by (le) (rate(scenepay_journal_fsync_seconds_bucket[5m])))`, ""},
		{`rate(scenepay_journal_fsync_seconds_count[1m]) / go_goroutines`, ""},
		{`rate(scenepay_gateway_request_total[5m])`, "scenepay_gateway_request_total"},
		{`scenepay_journal_fsync_seconds_total`, "scenepay_journal_fsync_seconds_total"},
		{`rate(scenepay_gateway_requests_total[5m]) / rate(scenepay_gateway_handoff_backlog_batches[5m])`, "scenepay_gateway_handoff_backlog_batches"},
		{`scenepay_settlement_window_state{state="OPEN"} > 1`, "scenepay_settlement_window_state"},
	} {
		if got := strings.Join(unknownMetrics(tc.expr, cat), ","); got != tc.want {
			t.Errorf("unknownMetrics(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// dashboardQueries walks the dashboard JSON and returns every PromQL string
// (panel target "expr", template variable "query" and "definition") with
// where it was found.
func dashboardQueries(v any, where string, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		here := where
		if title, ok := x["title"].(string); ok {
			here = where + "/" + title
		} else if name, ok := x["name"].(string); ok {
			here = where + "/$" + name
		}
		for k, child := range x {
			if s, ok := child.(string); ok && (k == "expr" || k == "definition" || k == "query" && strings.Contains(s, "(")) {
				out[s] = here
				continue
			}
			dashboardQueries(child, here, out)
		}
	case []any:
		for _, child := range x {
			dashboardQueries(child, where, out)
		}
	}
}

// sceneSelector matches a metric selector with its label matchers.
var sceneSelector = regexp.MustCompile(`(scenepay_[a-zA-Z0-9_:]*)\{([^}]*)\}`)

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Type        string            `json:"type"`
		Title       string            `json:"title"`
		Description string            `json:"description"`
		Targets     []json.RawMessage `json:"targets"`
	} `json:"panels"`
}

func TestDeployDashboardAndAlertsUseServedMetrics(t *testing.T) {
	catalogue := scrapeCatalogue(t)
	settlement := settlementCatalogue(t)
	for _, must := range []string{"scenepay_gateway_requests_total", "scenepay_gateway_request_duration_seconds_bucket", "scenepay_gateway_mqtt_connections", "scenepay_journal_fsync_seconds_bucket", "scenepay_handoff_backlog_records"} {
		if !catalogue[must] {
			t.Fatalf("scraped catalogue lacks %s; is the scrape wired right? names: %v", must, sortedNames(catalogue))
		}
	}
	for _, must := range []string{"scenepay_settlement_window_state", "scenepay_settlement_reconciliation_difference_fen",
		"scenepay_settlement_files_written_total", "scenepay_settlement_reconciliation_journal_gateways",
		"scenepay_settlement_reconciliation_pending_windows", "scenepay_settlement_reconciliation_failures_total"} {
		if !settlement[must] {
			t.Fatalf("settlement catalogue lacks %s; is the clearer wired right? names: %v", must, sortedNames(settlement))
		}
	}
	// Both processes are scraped by their own job; a settlement metric
	// selected with the gateway's job (or the reverse) is an empty panel or
	// a silent alert, so each selector must name its process's job.
	gatewayNames := maps.Clone(catalogue)
	jobOf := func(name string) string {
		if settlement[name] && !gatewayNames[name] {
			return `job="scenepay-settlement"`
		}
		return `job="scenepay-gateway"`
	}
	wrongJob := func(expr string) []string {
		var out []string
		for _, m := range sceneSelector.FindAllStringSubmatch(expr, -1) {
			if !catalogue[m[1]] {
				continue // reported as unknown
			}
			if !strings.Contains(m[2], jobOf(m[1])) {
				out = append(out, m[0]+" lacks "+jobOf(m[1]))
			}
		}
		return out
	}
	for n := range settlement {
		catalogue[n] = true
	}

	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	queries := map[string]string{}
	dashboardQueries(tree, "", queries)
	if len(queries) < 10 {
		t.Fatalf("found only %d queries in %s; is the walk right?", len(queries), dashboardPath)
	}
	for q, where := range queries {
		if len(metricNames(q)) == 0 {
			t.Errorf("%s: query names no scenepay metric: %s", where, q)
		}
		if bad := unknownMetrics(q, catalogue); len(bad) > 0 {
			t.Errorf("%s: %v not served by the gateway or settlement: %s", where, bad, q)
		}
		for _, bad := range wrongJob(q) {
			t.Errorf("%s: %s", where, bad)
		}
	}

	// The layout the operators were promised: hot path, a row per scene
	// whose every query selects that scene (scene="bus" on request
	// metrics, kind="bus" on terminal gauges), settlement.
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	sceneOf := map[string]string{
		"Scene: Transit (bus readers)":          "bus",
		"Scene: Market (stall QR terminals)":    "stall",
		"Scene: Hospital (self-service kiosks)": "kiosk",
	}
	rows := map[string]bool{}
	scene, row := "", ""
	settlementPanels := 0 // panels with queries under the Settlement row
	for _, p := range d.Panels {
		if row == "Settlement" && p.Type != "row" && len(p.Targets) > 0 {
			settlementPanels++
		}
		switch {
		case p.Type == "row":
			rows[p.Title] = true
			row, scene = p.Title, sceneOf[p.Title]
			if strings.HasPrefix(p.Title, "Scene: ") && scene == "" {
				t.Errorf("row %q names no known scene", p.Title)
			}
		case p.Type == "text":
		case len(p.Targets) == 0:
			t.Errorf("panel %q has no query", p.Title)
		case scene != "":
			for _, raw := range p.Targets {
				var tg struct {
					Expr string `json:"expr"`
				}
				if err := json.Unmarshal(raw, &tg); err != nil {
					t.Fatal(err)
				}
				sels := sceneSelector.FindAllStringSubmatch(tg.Expr, -1)
				if len(sels) == 0 {
					t.Errorf("%s / %q: no metric selector in %s", row, p.Title, tg.Expr)
				}
				for _, m := range sels {
					label := `scene="` + scene + `"`
					if strings.HasPrefix(m[1], "scenepay_gateway_terminals_") {
						label = `kind="` + scene + `"`
					}
					if !strings.Contains(m[2], label) {
						t.Errorf("%s / %q: %s is not selected by %s", row, p.Title, m[0], label)
					}
				}
			}
		}
	}
	for _, want := range []string{"Hot path (gateway)", "Scene: Transit (bus readers)", "Scene: Market (stall QR terminals)", "Scene: Hospital (self-service kiosks)", "Settlement"} {
		if !rows[want] {
			t.Errorf("dashboard has no row %q", want)
		}
	}
	// Handoff, windows by state, closed and settled, reconciliation.
	if settlementPanels < 4 {
		t.Errorf("the Settlement row has %d panels with queries, want at least 4", settlementPanels)
	}

	// Live alert rules may only name served metrics.
	live, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for i, line := range strings.Split(string(live), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		seen += len(metricNames(line))
		if bad := unknownMetrics(line, catalogue); len(bad) > 0 {
			t.Errorf("%s:%d: %v not served by the gateway or settlement; a rule waits for its metric outside alerts.yml", alertsPath, i+1, bad)
		}
		for _, bad := range wrongJob(line) {
			t.Errorf("%s:%d: %s", alertsPath, i+1, bad)
		}
	}
	if seen < 9 {
		t.Fatalf("%s names only %d metrics; is the file read right?", alertsPath, seen)
	}

}

// TestDeployDashboardQueriesParse runs every dashboard query through the PromQL
// parser of promtool (make check-deploy installs it): each becomes a
// recording rule in a scratch rules file, with Grafana's variables replaced by
// values Prometheus accepts.
func TestDeployDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (make check-deploy installs it)")
	}
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	queries := map[string]string{}
	dashboardQueries(tree, "", queries)
	grafanaVars := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for q := range queries {
		if strings.HasPrefix(q, "label_values(") {
			continue // a Grafana function, not PromQL
		}
		n++
		expr, _ := json.Marshal(grafanaVars.Replace(q)) // a JSON string is a YAML string
		b.WriteString("      - record: dashboard:query_" + strconv.Itoa(n) + "\n        expr: " + string(expr) + "\n")
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// sortedNames is for failure messages.
func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
