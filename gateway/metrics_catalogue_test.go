package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// catalogueRow matches a metric row of docs/metrics.md: | `name` | type | ...
var catalogueRow = regexp.MustCompile("(?m)^\\| `([a-z_:][a-z0-9_:]*)` \\| (counter|gauge|histogram|summary) \\|")

// typeLine matches a "# TYPE name type" line of the text exposition format.
var typeLine = regexp.MustCompile(`(?m)^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$`)

func diffNames(a, b map[string]string) []string {
	var out []string
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestMetricsCatalogue scrapes /metrics of a running gateway after traffic
// and holds docs/metrics.md to it: every scenepay_* metric exported is
// listed with its type, every listed metric is exported, the Go and process
// groups are there, and promtool accepts the scrape.
func TestMetricsCatalogue(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	optional := map[string]bool{} // labelled metrics with no series before their first event
	for _, line := range strings.Split(string(doc), "\n") {
		if m := catalogueRow.FindStringSubmatch(line); m != nil {
			documented[m[1]] = m[2]
			optional[m[1]] = strings.Contains(line, "Series appear only after")
		}
	}
	if len(documented) < 10 {
		t.Fatalf("only %d metrics parsed from docs/metrics.md; the table format changed?", len(documented))
	}

	g := startOps(t)
	driveTraffic(t, g)
	resp, err := http.Get(g.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	exported := map[string]string{}
	groups := map[string]bool{}
	for _, m := range typeLine.FindAllStringSubmatch(string(scrape), -1) {
		if strings.HasPrefix(m[1], "scenepay_") {
			exported[m[1]] = m[2]
		}
		groups[strings.SplitN(m[1], "_", 2)[0]] = true
	}
	if missing := diffNames(exported, documented); len(missing) > 0 {
		t.Errorf("exported but not in docs/metrics.md: %v", missing)
	}
	for _, name := range diffNames(documented, exported) {
		if !optional[name] {
			t.Errorf("in docs/metrics.md but not exported: %s", name)
		}
	}
	for name, typ := range documented {
		if got, ok := exported[name]; ok && got != typ {
			t.Errorf("%s: documented as %s, exported as %s", name, typ, got)
		}
	}
	for _, grp := range []string{"go", "process"} {
		if !groups[grp] {
			t.Errorf("the %s_* collector group documented in docs/metrics.md is not exported", grp)
		}
	}
	// Traffic reached the counters (the scrape is not of an idle gateway).
	if !regexp.MustCompile(`(?m)^scenepay_gateway_requests_total\{code="00",instrument="(county|bank|ecny)",scene="(bus|stall|kiosk)",type="purchase"\} [1-9]`).Match(scrape) {
		t.Error("no approved purchase counted in the scrape")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("promtool not installed (Debian package prometheus; .ci/run installs it); set CI to make this a failure")
		}
		t.Fatal("promtool not installed but CI is set: .ci/run must install the prometheus package")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
