// Package confstore owns the gateway's versioned scene configuration: a
// fixed set of named JSON documents ("transit", "market", "hospital",
// "limits"), each with a version that only grows, a bounded history, the
// binary encodings the engine journals and snapshots, the signed envelope
// the gateway publishes as a retained MQTT message, and the table of the
// versions each terminal reports having applied.
//
// The store holds no I/O. The engine journals a change (AppendDoc) before it
// applies it (Apply) and publishes it only once the journal entry is durable,
// so a version an operator was told about survives a crash and a terminal
// never sees a version the gateway could forget.
//
// Each name maps to exactly one terminal group, because an MQTT topic keeps
// only one retained message: {root}/g/{group}/cfg carries the current
// document of the one name of that group.
package confstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"scenepay/gateway/internal/bincur"
)

// Bounds, named with their units.
const (
	// DocBytesMax bounds a document's compact JSON. With the envelope and the
	// MAC trailer the published payload stays within terminals.MaxPayload,
	// which every terminal's frame reader already enforces.
	DocBytesMax = 3800
	// HistoryMax is how many versions of one name are kept (the current one
	// included); older versions are dropped, their numbers are never reused.
	HistoryMax = 16
)

// Group of the terminals a document is for: a registry kind, or GroupAll.
const GroupAll = "all"

// groups maps each known document name to its terminal group. The set is
// fixed: adding a name is a protocol change (terminals must know it) and
// each group topic retains only one document.
var groups = map[string]string{
	"transit":  "bus",
	"market":   "stall",
	"hospital": "kiosk",
	"limits":   GroupAll,
}

// Names returns the known document names, sorted.
func Names() []string {
	out := make([]string, 0, len(groups))
	for n := range groups {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// GroupOf returns the terminal group of name.
func GroupOf(name string) (string, bool) {
	g, ok := groups[name]
	return g, ok
}

// ErrCode classifies a refused document.
type ErrCode string

// Refusal classes, for the operator API (all are the operator's mistake).
const (
	ErrUnknownName ErrCode = "unknown_name"
	ErrBadJSON     ErrCode = "bad_json"
	ErrTooLarge    ErrCode = "too_large"
	// ErrInvalid is a well-formed document its scene's strict decoder
	// refuses (an unknown field, a value out of range); the message says which.
	ErrInvalid ErrCode = "invalid"
)

// Error is a refused document.
type Error struct {
	Code ErrCode
	Msg  string
}

func (e *Error) Error() string { return "config: " + string(e.Code) + ": " + e.Msg }

// ErrCorrupt marks journal or snapshot bytes that do not decode.
var ErrCorrupt = errors.New("confstore: corrupt encoding")

// Doc is one version of a named document.
type Doc struct {
	Name    string
	Version uint64
	At      time.Time // when the change was accepted (UTC, millisecond precision)
	Body    []byte    // compact JSON object
}

// Normalize checks a document and returns its compact form: a known name, a
// JSON object (not an array or a scalar), at most DocBytesMax bytes compact.
func Normalize(name string, body []byte) ([]byte, error) {
	if _, ok := groups[name]; !ok {
		return nil, &Error{ErrUnknownName, "unknown config name " + strconv.Quote(clip(name)) + "; known: transit, market, hospital, limits"}
	}
	if len(body) > 4*DocBytesMax {
		return nil, &Error{ErrTooLarge, fmt.Sprintf("document is %d bytes; the limit is %d bytes of compact JSON", len(body), DocBytesMax)}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, body); err != nil {
		return nil, &Error{ErrBadJSON, "document is not valid JSON: " + err.Error()}
	}
	b := buf.Bytes()
	if len(b) == 0 || b[0] != '{' {
		return nil, &Error{ErrBadJSON, "document must be a JSON object"}
	}
	if len(b) > DocBytesMax {
		return nil, &Error{ErrTooLarge, fmt.Sprintf("document is %d bytes compact; the limit is %d", len(b), DocBytesMax)}
	}
	return b, nil
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Store is the versioned document table. Safe for concurrent use; the
// engine serializes changes so that versions are journaled in order.
type Store struct {
	mu   sync.RWMutex
	hist map[string][]Doc // oldest first, at most HistoryMax
}

// New returns an empty store.
func New() *Store { return &Store{hist: map[string][]Doc{}} }

// Prepare validates body and returns the next version of name without
// applying it; the engine journals it, then calls Apply.
func (s *Store) Prepare(name string, body []byte, at time.Time) (Doc, error) {
	b, err := Normalize(name, body)
	if err != nil {
		return Doc{}, err
	}
	s.mu.RLock()
	cur := s.versionLocked(name)
	s.mu.RUnlock()
	return Doc{Name: name, Version: cur + 1, At: at.UTC().Truncate(time.Millisecond), Body: b}, nil
}

// Apply adds d as the next version of its name. Anything but exactly the
// next version is refused: on replay that means a lost or repeated entry.
func (s *Store) Apply(d Doc) error {
	if _, ok := groups[d.Name]; !ok {
		return fmt.Errorf("%w: unknown name %q", ErrCorrupt, clip(d.Name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.versionLocked(d.Name); d.Version != cur+1 {
		return fmt.Errorf("%w: %s version %d after %d", ErrCorrupt, d.Name, d.Version, cur)
	}
	h := append(s.hist[d.Name], d)
	if len(h) > HistoryMax {
		h = append([]Doc(nil), h[len(h)-HistoryMax:]...)
	}
	s.hist[d.Name] = h
	return nil
}

// Put is Prepare then Apply (tests and tools; the engine journals between).
func (s *Store) Put(name string, body []byte, at time.Time) (Doc, error) {
	d, err := s.Prepare(name, body, at)
	if err != nil {
		return Doc{}, err
	}
	return d, s.Apply(d)
}

func (s *Store) versionLocked(name string) uint64 {
	if h := s.hist[name]; len(h) > 0 {
		return h[len(h)-1].Version
	}
	return 0
}

// Version is the current version of name (0: never set).
func (s *Store) Version(name string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.versionLocked(name)
}

// Get returns the current document of name.
func (s *Store) Get(name string) (Doc, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.hist[name]
	if len(h) == 0 {
		return Doc{}, false
	}
	return h[len(h)-1], true
}

// History returns the kept versions of name, oldest first.
func (s *Store) History(name string) []Doc {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]Doc(nil), s.hist[name]...)
}

// Current returns the current document of every name that has one, by name.
func (s *Store) Current() []Doc {
	var out []Doc
	for _, n := range Names() {
		if d, ok := s.Get(n); ok {
			out = append(out, d)
		}
	}
	return out
}

// AppendDoc appends the binary encoding of d (journal entry body):
//
//	uvarint len(name) | name | uvarint version | varint at (Unix ms) | uvarint len(body) | body
func AppendDoc(dst []byte, d Doc) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(d.Name)))
	dst = append(dst, d.Name...)
	dst = binary.AppendUvarint(dst, d.Version)
	dst = binary.AppendVarint(dst, d.At.UnixMilli())
	dst = binary.AppendUvarint(dst, uint64(len(d.Body)))
	return append(dst, d.Body...)
}

// DecodeDoc parses AppendDoc's output, all of b.
func DecodeDoc(b []byte) (Doc, error) {
	c := bincur.New(b, ErrCorrupt)
	d, err := readDoc(c)
	if err != nil {
		return Doc{}, err
	}
	if len(c.B) != 0 {
		return Doc{}, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(c.B))
	}
	return d, nil
}

func readDoc(c *bincur.Cursor) (Doc, error) {
	name := c.Bytes()
	ver := c.Uvarint()
	var at int64
	if c.Err == nil {
		v, n := binary.Varint(c.B)
		if n <= 0 {
			c.Err = ErrCorrupt
		} else {
			at, c.B = v, c.B[n:]
		}
	}
	body := c.Bytes()
	if c.Err != nil {
		return Doc{}, c.Err
	}
	if _, ok := groups[string(name)]; !ok || ver == 0 {
		return Doc{}, fmt.Errorf("%w: bad name or version", ErrCorrupt)
	}
	if _, err := Normalize(string(name), body); err != nil {
		return Doc{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return Doc{Name: string(name), Version: ver, At: time.UnixMilli(at).UTC(), Body: append([]byte(nil), body...)}, nil
}

// AppendSnapshot appends the whole store:
//
//	uvarint names | per name (sorted): uvarint docs | docs oldest first (AppendDoc)
func (s *Store) AppendSnapshot(dst []byte) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var names []string
	for n, h := range s.hist {
		if len(h) > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, n := range names {
		h := s.hist[n]
		dst = binary.AppendUvarint(dst, uint64(len(h)))
		for _, d := range h {
			dst = AppendDoc(dst, d)
		}
	}
	return dst
}

// RestoreSnapshot replaces the store's content with a snapshot from the
// start of b and returns the bytes after it.
func (s *Store) RestoreSnapshot(b []byte) ([]byte, error) {
	c := bincur.New(b, ErrCorrupt)
	hist := map[string][]Doc{}
	nn := c.Uvarint()
	if nn > uint64(len(groups)) {
		return nil, fmt.Errorf("%w: %d names", ErrCorrupt, nn)
	}
	for i := uint64(0); i < nn && c.Err == nil; i++ {
		nd := c.Uvarint()
		if nd == 0 || nd > HistoryMax {
			return nil, fmt.Errorf("%w: %d versions of one name", ErrCorrupt, nd)
		}
		var h []Doc
		for j := uint64(0); j < nd; j++ {
			d, err := readDoc(c)
			if err != nil {
				return nil, err
			}
			if len(h) > 0 && (d.Name != h[0].Name || d.Version <= h[len(h)-1].Version) {
				return nil, fmt.Errorf("%w: history of %s out of order", ErrCorrupt, d.Name)
			}
			h = append(h, d)
		}
		if _, dup := hist[h[0].Name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrCorrupt, h[0].Name)
		}
		hist[h[0].Name] = h
	}
	if c.Err != nil {
		return nil, c.Err
	}
	s.mu.Lock()
	s.hist = hist
	s.mu.Unlock()
	return c.B, nil
}
