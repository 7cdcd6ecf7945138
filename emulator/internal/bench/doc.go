// Package bench owns the end-to-end benchmark of the gateway against a bare
// broker echo (make bench-e2e): a private Mosquitto started with the
// production settings of deploy/mosquitto, two arms on that one broker in
// alternating windows (an echo responder that sends every request payload
// straight back, and the real gateway binary with its journal fsync on),
// open-loop load from many lightweight terminals stepped up until the
// latency objective breaks, CPU time per transaction read from /proc, and a
// connection-scale probe of raw MQTT clients. It prints a table and ends
// with one machine-readable line "BENCH {json}".
//
// Why a raw load client (rawload.go, the default): one paho client per
// terminal costs the generator more CPU per transaction than the echo arm
// it measures, so on a small machine the generator capped both arms. The
// raw client speaks just the MQTT 3.1.1 a terminal needs over one
// connection per terminal, writes each connection's packets into a
// bufio.Writer flushed once per scheduling tick, and parses replies in
// place in one reader per connection. The paho path stays selectable
// (Options.LoadClient) for comparison.
//
// Why open loop: a closed-loop client waits for each answer before sending
// the next request, so a slow server slows the offered load and its queueing
// never shows in the latencies (coordinated omission). Here every request
// has a scheduled send time fixed before the window starts, and latency is
// measured from that time, so a sender that falls behind is charged for it.
//
// Why alternating windows: both arms answer on the same topics through the
// same shared subscription, so only one may be subscribed at a time; the
// gateway is started for each of its windows and stopped for the echo's,
// and machine noise falls on both arms alike instead of on whichever ran
// last.
package bench
