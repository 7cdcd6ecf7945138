package engine

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"scenepay/gateway/internal/confstore"
	"scenepay/terminals"
)

// Scene configuration push. An operator's change goes:
//
//	PutConfig -> strict scene decode (scenecfg.go; refused = 400, nothing journaled)
//	  -> journal entry (type 4) + apply to the store, under snapMu
//	  -> fsync -> every shard writer takes the new rules (workConfig)
//	  -> publish the signed document RETAINED on {root}/g/{group}/cfg
//
// The publish happens only after the entry is durable, so a terminal never
// applies a version the gateway could lose in a crash. The broker keeps the
// retained message for terminals that are offline now; the gateway
// republishes every current document (and the deny list, denylist.go) when
// it gets a publisher (start-up) and after every reconnect of the
// publisher's connections (ReconnectNotifier), which heals a broker that
// restarted without persistence and lost its retained store. The payload
// bytes depend only on the document, so republishing is idempotent.
//
// Changes are serialized by configState.mu (held through the publish, and
// through a republish), so retained messages go out in version order and
// the last one published is always the current version. The publisher
// must not resend a retained message by itself after a reconnect (ingress
// does not): a stale version resent after the republish would stay.

// RetainedPublisher is implemented by a Publisher that can also publish
// retained messages and report whether the broker accepted them.
type RetainedPublisher interface {
	PublishRetained(topic string, payload []byte) error
}

// ReconnectNotifier is implemented by a publisher whose broker connections
// can be lost and come back (ingress): f is called after each reconnect,
// when a broker restarted without persistence may have lost every retained
// message.
type ReconnectNotifier interface {
	OnConnected(f func())
}

// RepublishRetained publishes every current config document and the deny
// list again (start-up, reconnect). Idempotent.
func (e *Engine) RepublishRetained() {
	e.RepublishConfig()
	e.RepublishDeny()
}

type configState struct {
	mu      sync.Mutex // serializes changes and their publication
	store   *confstore.Store
	reports *confstore.Reports
	key     []byte // config-signing key (confstore.SigningKey)
}

func (c *configState) init(master []byte, terminalsMax int) {
	c.store = confstore.New()
	c.reports = confstore.NewReports(terminalsMax)
	c.key = confstore.SigningKey(master, confstore.SigningKeyVersion)
}

// ConfigLagListMax bounds the terminals one lagging answer lists.
const ConfigLagListMax = 1000

// PutConfig validates a new version of a config document with its scene's
// strict decoder, journals it, waits until it is durable, hands its rules to
// every shard writer, then publishes it retained. A *confstore.Error
// is the operator's mistake; any other error is a fault. A failed publish
// does not undo the change (it is durable): it is logged and counted, and
// the next change, broker reconnect or restart publishes the current
// version again.
func (e *Engine) PutConfig(name string, body []byte) (confstore.Doc, error) {
	if err := e.Ready(); err != nil {
		return confstore.Doc{}, err
	}
	c := &e.conf
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := c.store.Prepare(name, body, e.cfg.Clock())
	if err != nil {
		return confstore.Doc{}, err
	}
	// Validate with the scene's strict decoder before anything is
	// journaled: a refused document leaves no trace but the audit line.
	rules, err := e.compileDoc(d.Name, d.Body)
	if err != nil {
		return confstore.Doc{}, err
	}
	payload := confstore.AppendDoc([]byte{entryConfig}, d)
	e.snapMu.Lock()
	lsn, err := e.j.Append(payload, nil)
	if err == nil {
		err = c.store.Apply(d)
	}
	e.snapMu.Unlock()
	if err != nil {
		e.fail(err)
		return confstore.Doc{}, err
	}
	if err := e.j.Sync(lsn); err != nil {
		e.fail(err)
		return confstore.Doc{}, err
	}
	// Durable: every shard takes the new rules before the operator is
	// answered, so the next request is decided with them. A request decided
	// under them is journaled after this entry, so it never survives a
	// crash that loses the change.
	if err := e.installRules(&rules); err != nil {
		return confstore.Doc{}, err
	}
	e.m.ConfigVersion.WithLabelValues(d.Name).Set(float64(d.Version))
	e.log.Info("config changed", "name", d.Name, "version", d.Version, "bytes", len(d.Body))
	e.publishConfigLocked(d)
	return d, nil
}

// Config returns the current document of name.
func (e *Engine) Config(name string) (confstore.Doc, bool) { return e.conf.store.Get(name) }

// ConfigLagging lists the terminals of name's group whose last reported
// version of name is below the current one, or that never reported it
// (including every terminal after a gateway restart until its next heartbeat).
func (e *Engine) ConfigLagging(name string) (cur uint64, list []confstore.Lag, total int) {
	cur = e.conf.store.Version(name)
	list, total = e.conf.reports.Lagging(name, cur, e.reg.All(), ConfigLagListMax)
	return cur, list, total
}

// configLaggingCounts is the scrape-time source of the lagging gauge.
func (e *Engine) configLaggingCounts() map[string]int {
	ts := e.reg.All()
	out := make(map[string]int, len(confstore.Names()))
	for _, n := range confstore.Names() {
		_, out[n] = e.conf.reports.Lagging(n, e.conf.store.Version(n), ts, 0)
	}
	return out
}

// RepublishConfig publishes every current document again (start-up,
// reconnect).
func (e *Engine) RepublishConfig() {
	e.conf.mu.Lock()
	defer e.conf.mu.Unlock()
	for _, d := range e.conf.store.Current() {
		e.publishConfigLocked(d)
	}
}

func (e *Engine) publishConfigLocked(d confstore.Doc) {
	h := e.pub.Load()
	if h == nil {
		return
	}
	rp, ok := h.p.(RetainedPublisher)
	if !ok {
		return
	}
	g, _ := confstore.GroupOf(d.Name)
	if err := rp.PublishRetained(e.cfg.Topics.GroupConfig(g), confstore.Seal(e.conf.key, d)); err != nil {
		e.m.ConfigPublishErrors.Inc()
		e.log.Error("config publish failed; it is retried on the next change, reconnect or restart", "name", d.Name, "version", d.Version, "err", err)
	}
}

// noteConfigReport records the versions a heartbeat reported (after its MAC
// verified). In memory only; see confstore.Reports.
func (e *Engine) noteConfigReport(tid string, v *terminals.CfgVersions, at time.Time) {
	if v.Len() != 0 && !e.conf.reports.Record(tid, v, at) {
		e.log.Warn("config report table full", "tid", tid)
	}
}

func (e *Engine) applyConfigEntry(p []byte) error {
	d, err := confstore.DecodeDoc(p)
	if err != nil {
		return fmt.Errorf("%w: %v", errEntry, err)
	}
	if err := e.conf.store.Apply(d); err != nil {
		if errors.Is(err, confstore.ErrCorrupt) {
			return fmt.Errorf("%w: %v", errEntry, err)
		}
		return err
	}
	e.installDoc(d) // replay: the rules at this point of the journal
	e.m.ConfigVersion.WithLabelValues(d.Name).Set(float64(d.Version))
	return nil
}

// configRecovered sets the version gauges after recovery.
func (e *Engine) configRecovered() {
	for _, d := range e.conf.store.Current() {
		e.m.ConfigVersion.WithLabelValues(d.Name).Set(float64(d.Version))
	}
}
