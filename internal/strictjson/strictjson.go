// Package strictjson owns the project's strict JSON decoding: exactly one
// value, no field the target does not declare, nothing but white space
// after it. Every decoder of operator documents, wire bodies and batches
// uses it, so that a typo or a second object is refused the same way
// everywhere rather than silently ignored.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrTrailing is returned when anything but white space follows the value.
var ErrTrailing = errors.New("trailing data after the JSON value")

// Decode decodes data into v, refusing unknown fields and trailing data.
// A decode error is encoding/json's; trailing data is ErrTrailing.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailing
	}
	return nil
}
