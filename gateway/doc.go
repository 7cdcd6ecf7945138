// Package gateway is the root of the payment gateway component: the hot path
// from terminal MQTT requests to durable, published replies. The binary is in
// cmd/gateway; the parts live under internal/:
//
//	core      pure authorization state machine per account shard (no I/O)
//	idem      per-terminal idempotency, replay window and reversal tombstones
//	registry  terminals and their MAC keys
//	journal   durable segmented log with group commit, and snapshots
//	vfs       filesystem seam for fault injection
//	engine    the request path: verify, dedupe, shard writers, journal, reply, recovery
//	ingress   MQTT connections (internal/mqttclient) and the shared subscription
//	broker    embedded MQTT broker (mochi) for the single-process default
//	opapi     operator HTTP API, /metrics, /healthz, /readyz (fasthttp)
package gateway
