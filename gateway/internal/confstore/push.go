package confstore

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

// SigningKeyVersion is the version of the config-signing key in use.
const SigningKeyVersion = 1

// SigningKey derives the config-signing key from the bank's master key:
//
//	Kcfg = HMAC-SHA256(master, "scenepay/config-key/v1|" + decimal(ver))
//
// A group topic reaches many terminals, so the gateway cannot MAC it with
// each terminal's key; it MACs it with this one key, which the operator
// provisions into every terminal together with the terminal's own key. The
// label differs from the terminal-key label ("scenepay/terminal-key/v1|"),
// so no terminal id, whatever it is, derives the config key.
//
// A terminal holding Kcfg could forge configuration for the fleet, but not
// requests: configuration is advisory to the terminal, and every request is
// still checked by the gateway under the terminal's own key.
func SigningKey(master []byte, ver uint32) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("scenepay/config-key/v1|"))
	m.Write(strconv.AppendUint(nil, uint64(ver), 10))
	return m.Sum(nil)
}

// AppendEnvelope appends the body of the retained message for d:
//
//	{"v":1,"name":"transit","version":3,"doc":{...}}
//
// The bytes depend only on d, so republishing is idempotent.
func AppendEnvelope(dst []byte, d Doc) []byte {
	dst = append(dst, `{"v":1,"name":`...)
	dst = strconv.AppendQuote(dst, d.Name) // names are plain ASCII identifiers
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, d.Version, 10)
	dst = append(dst, `,"doc":`...)
	dst = append(dst, d.Body...)
	return append(dst, '}')
}

// Seal returns the framed, signed retained payload for d (terminals frame:
// body '\n' hex HMAC-SHA256 under the config-signing key).
func Seal(key []byte, d Doc) []byte {
	return terminals.Seal(key, AppendEnvelope(nil, d))
}

// Envelope is a verified, decoded config message (what a terminal reads).
type Envelope struct {
	V       int             `json:"v"`
	Name    string          `json:"name"`
	Version uint64          `json:"version"`
	Doc     json.RawMessage `json:"doc"`
}

// Open verifies payload under the config-signing key and decodes it, the
// way a terminal must: MAC first, then a strict decode.
func Open(key, payload []byte) (Envelope, error) {
	var e Envelope
	body, err := terminals.Open(key, payload)
	if err != nil {
		return e, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("config envelope: %w", err)
	}
	if e.V != 1 || e.Version == 0 {
		return e, fmt.Errorf("config envelope: unsupported v %d or version %d", e.V, e.Version)
	}
	if _, ok := groups[e.Name]; !ok {
		return e, fmt.Errorf("config envelope: unknown name %q", clip(e.Name))
	}
	return e, nil
}

// Report is what one terminal last said it applied.
type Report struct {
	Versions map[string]uint64 // known names only
	At       time.Time
}

// Reports is the per-terminal table of applied versions. It lives in memory
// only: after a restart every terminal counts as "never reported" until its
// next heartbeat, which errs on the side of showing a terminal as lagging.
// Bounded by max (the registry's terminal bound).
type Reports struct {
	mu  sync.RWMutex
	m   map[string]Report
	max int
}

// NewReports returns an empty table bounded to max terminals.
func NewReports(max int) *Reports { return &Reports{m: map[string]Report{}, max: max} }

// Record merges the versions a terminal reported at at. Names the gateway
// does not know are ignored (a newer terminal may know more). It returns
// false, recording nothing, when tid is new and the table is full.
func (r *Reports) Record(tid string, v *terminals.CfgVersions, at time.Time) bool {
	if v.Len() == 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.m[tid]
	if !ok && len(r.m) >= r.max {
		return false
	}
	vs := make(map[string]uint64, len(groups))
	for n, ver := range old.Versions {
		vs[n] = ver
	}
	for i := 0; i < v.Len(); i++ {
		e := v.At(i)
		if _, known := groups[e.Name]; known {
			vs[e.Name] = e.Version
		}
	}
	r.m[tid] = Report{Versions: vs, At: at.UTC()}
	return true
}

// Get returns the last report of tid.
func (r *Reports) Get(tid string) (Report, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rep, ok := r.m[tid]
	return rep, ok
}

// Lag is one terminal behind the current version of a document.
type Lag struct {
	TID        string    `json:"tid"`
	Kind       string    `json:"kind"`
	Reported   uint64    `json:"reported"`             // 0: never reported this document
	ReportedAt time.Time `json:"reported_at,omitzero"` // last report of any version
}

// Lagging lists the terminals of name's group (from ts, sorted by id) whose
// reported version of name is below cur, or that never reported it. At most
// listMax are listed; total counts them all.
func (r *Reports) Lagging(name string, cur uint64, ts []registry.Terminal, listMax int) (list []Lag, total int) {
	g, ok := groups[name]
	if !ok || cur == 0 {
		return nil, 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, t := range ts {
		if g != GroupAll && t.Kind != g {
			continue
		}
		rep := r.m[t.TID]
		if v := rep.Versions[name]; v < cur {
			total++
			if len(list) < listMax {
				list = append(list, Lag{TID: t.TID, Kind: t.Kind, Reported: v, ReportedAt: rep.At})
			}
		}
	}
	return list, total
}
