package engine

// Per-scene and per-instrument labels of the request metrics, and the
// terminals online/registered gauges (issue 6).
//
// Every label value comes from a fixed set so that cardinality stays
// bounded whatever terminals send: scene is the registered terminal's kind
// (bus, stall, kiosk; "none" cannot happen for a registered terminal but
// keeps the mapping total), instrument is the request's instrument kind
// (county, bank, ecny) or "none" (heartbeats, refusals before the request
// decodes, unknown kinds). Never a terminal id or a card.

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

// Label values.
const labelNone = "none"

// sceneKinds are the registry kinds, the values of the scene label.
var sceneKinds = []string{registry.KindBus, registry.KindStall, registry.KindKiosk}

// instKinds are the instrument kinds that label requests.
var instKinds = []string{terminals.InstCounty, terminals.InstBank, terminals.InstECNY}

func sceneLabel(term *registry.Entry) string {
	if term == nil {
		return labelNone
	}
	switch k := term.Terminal().Kind; k {
	case registry.KindBus, registry.KindStall, registry.KindKiosk:
		return k
	}
	return labelNone
}

// typeLabel maps a message type to the type label: every served type of
// the wire contract, "other" for anything else (unknown types, refusals
// before the type is read).
func typeLabel(typ string) string {
	switch typ {
	case terminals.TypePurchase, terminals.TypeReversal, terminals.TypeBalance, terminals.TypeHeartbeat,
		terminals.TypeTapIn, terminals.TypeTapOut, terminals.TypeHold, terminals.TypeCapture, terminals.TypeRelease,
		terminals.TypeQRPay, terminals.TypeRefund:
		return typ
	}
	return "other"
}

func instLabel(kind string) string {
	switch kind {
	case terminals.InstCounty:
		return terminals.InstCounty
	case terminals.InstBank:
		return terminals.InstBank
	case terminals.InstECNY:
		return terminals.InstECNY
	}
	return labelNone
}

// precreateSceneSeries creates the approved series of the common request
// types for every scene and instrument (and heartbeats per scene), so that
// per-scene rates exist before the first event without creating every
// code x type x scene x instrument combination up front.
func (m *Metrics) precreateSceneSeries() {
	for _, sc := range sceneKinds {
		for _, in := range instKinds {
			for _, t := range []string{terminals.TypePurchase, terminals.TypeReversal, terminals.TypeBalance} {
				m.Requests.WithLabelValues(t, string(terminals.CodeApproved), sc, in)
				m.Latency.WithLabelValues(t, sc, in)
			}
		}
		m.Requests.WithLabelValues(terminals.TypeHeartbeat, string(terminals.CodeApproved), sc, labelNone)
		m.Latency.WithLabelValues(terminals.TypeHeartbeat, sc, labelNone)
	}
}

// terminalsCollector reports registered and online terminals by kind,
// counted at scrape time from the registry and the status each terminal
// last reported on its status topic (HandleStatus): counting at scrape
// time keeps the status path a single atomic store and cannot drift.
type terminalsCollector struct {
	online, registered *prometheus.Desc
	fn                 atomic.Pointer[func() (online, registered map[string]int)] // set once the engine has recovered
}

func newTerminalsCollector() *terminalsCollector {
	return &terminalsCollector{
		online: prometheus.NewDesc("scenepay_gateway_terminals_online",
			"Registered terminals whose last status message was \"online\", by kind.", []string{"kind"}, nil),
		registered: prometheus.NewDesc("scenepay_gateway_terminals_registered",
			"Registered terminals, by kind.", []string{"kind"}, nil),
	}
}

func (c *terminalsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.online
	ch <- c.registered
}

func (c *terminalsCollector) Collect(ch chan<- prometheus.Metric) {
	on, reg := map[string]int{}, map[string]int{}
	if p := c.fn.Load(); p != nil {
		on, reg = (*p)()
	}
	for _, k := range sceneKinds { // every kind, zeros included: a fleet going dark reads 0, not "no data"
		ch <- prometheus.MustNewConstMetric(c.online, prometheus.GaugeValue, float64(on[k]), k)
		ch <- prometheus.MustNewConstMetric(c.registered, prometheus.GaugeValue, float64(reg[k]), k)
	}
}

// terminalCounts counts registered and online terminals by kind.
func (e *Engine) terminalCounts() (online, registered map[string]int) {
	online, registered = make(map[string]int, len(sceneKinds)), make(map[string]int, len(sceneKinds))
	for _, t := range e.reg.All() {
		registered[t.Kind]++
		if ent, ok := e.reg.Get(t.TID); ok {
			if st, _, _ := ent.Status(); st == registry.StatusOnline {
				online[t.Kind]++
			}
		}
	}
	return online, registered
}

func (m *Metrics) setTerminalCounts(fn func() (online, registered map[string]int)) {
	m.terminals.fn.Store(&fn)
}
