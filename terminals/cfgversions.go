package terminals

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
)

// CfgVersionsMax bounds how many configuration documents one heartbeat
// reports; the gateway publishes four today.
const CfgVersionsMax = 8

// CfgVersion is one applied configuration document: its name and version.
type CfgVersion struct {
	Name    string
	Version uint64
}

// CfgVersions is the optional "cfg" object of a heartbeat, for example
// {"transit":3,"limits":1}: the version of each configuration document the
// terminal has applied. It is a fixed-size array, not a map, so that a
// Request stays comparable and decoding it does not allocate a map; the
// entries keep the order in which they were sent, so encoding is canonical.
type CfgVersions struct {
	n    int
	list [CfgVersionsMax]CfgVersion
}

// Len is the number of entries.
func (c *CfgVersions) Len() int { return c.n }

// At returns entry i (0 <= i < Len).
func (c *CfgVersions) At(i int) CfgVersion { return c.list[i] }

// Get returns the version reported for name.
func (c *CfgVersions) Get(name string) (uint64, bool) {
	for i := 0; i < c.n; i++ {
		if c.list[i].Name == name {
			return c.list[i].Version, true
		}
	}
	return 0, false
}

// Add appends an entry: a name of 1..32 of [A-Za-z0-9._-], not yet present,
// and a version >= 1.
func (c *CfgVersions) Add(name string, version uint64) error {
	if !ValidID(name, 32) {
		return bad("cfg", "document name must be 1..32 of [A-Za-z0-9._-]")
	}
	if version == 0 {
		return bad("cfg."+name, "version must be >= 1")
	}
	if _, dup := c.Get(name); dup {
		return bad("cfg."+name, "duplicate key")
	}
	if c.n == CfgVersionsMax {
		return bad("cfg", "at most "+strconv.Itoa(CfgVersionsMax)+" documents")
	}
	c.list[c.n] = CfgVersion{name, version}
	c.n++
	return nil
}

// decodeCfgVersions reads the "cfg" object with the strict scanner. An empty
// object is refused: a terminal that has applied nothing omits the field, so
// every report has exactly one encoding.
func decodeCfgVersions(s *scanner, c *CfgVersions) error {
	empty, err := s.objectStart("cfg")
	if err != nil {
		return err
	}
	if empty {
		return bad("cfg", "empty object; omit the field instead")
	}
	for more := true; more; {
		k, err := s.key("cfg")
		if err != nil {
			return err
		}
		if !ValidID(string(k), 32) {
			return bad("cfg", "document name must be 1..32 of [A-Za-z0-9._-]")
		}
		name := string(k)
		v, err := s.uint("cfg."+name, math.MaxUint64)
		if err != nil {
			return err
		}
		if err := c.Add(name, v); err != nil {
			return err
		}
		if more, err = s.after("cfg"); err != nil {
			return err
		}
	}
	return nil
}

func (c *CfgVersions) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	for i := 0; i < c.n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, c.list[i].Name)
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, c.list[i].Version, 10)
	}
	return append(dst, '}')
}

// MarshalJSON encodes the object in entry order.
func (c CfgVersions) MarshalJSON() ([]byte, error) { return c.appendJSON(nil), nil }

// UnmarshalJSON reads the object for encoding/json users (tools, tests). The
// gateway uses the strict decoder; both give the same value for what the
// strict decoder accepts.
func (c *CfgVersions) UnmarshalJSON(b []byte) error {
	*c = CfgVersions{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("cfg: expected a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string)
		t, err = dec.Token()
		if err != nil {
			return err
		}
		num, ok := t.(json.Number)
		if !ok {
			return errors.New("cfg: versions are integers")
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return err
		}
		if err := c.Add(name, v); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}
