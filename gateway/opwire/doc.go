// Package opwire owns the JSON shapes of the gateway's operator HTTP API,
// requests and responses, that more than one side reads or writes: the
// server (gateway/internal/opapi, and the engine, which stores the answers
// to stall code payments as bytes) and its clients (the emulator's
// opclient, which also plays the wallet backend). It is to the operator API
// what terminals/ is to the terminal wire: one definition that both sides
// import, so a field cannot be renamed on one side only. It depends on
// nothing but terminals/ and the standard library.
package opwire
