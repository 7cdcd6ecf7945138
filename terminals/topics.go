package terminals

import "strings"

// Topics is the topic scheme of protocol v1. Every terminal owns the subtree
// {Root}/t/{terminal id}/ and nothing else; the broker ACL confines it there
// (deploy/mosquitto). The gateway consumes requests through a shared
// subscription in Group so that several gateway instances split the load.
//
// Root is configurable so that several deployments (or test runs) can share
// one broker without hearing each other; production uses DefaultTopics.
type Topics struct {
	Root  string // e.g. "scp/v1"
	Group string // shared-subscription group of the gateways
}

// Leaf names of the per-terminal topics.
const (
	leafRequest = "req"
	leafReply   = "resp"
	leafStatus  = "status"
	leafConfig  = "cfg"
)

// DefaultTopics is the production scheme.
var DefaultTopics = Topics{Root: "scp/v1", Group: "scp-gateway"}

// Request is where terminal tid publishes requests (QoS 1).
func (t Topics) Request(tid string) string { return t.Root + "/t/" + tid + "/" + leafRequest }

// Reply is where the gateway publishes replies for tid (QoS 1).
func (t Topics) Reply(tid string) string { return t.Root + "/t/" + tid + "/" + leafReply }

// Status carries "online"/"offline" for tid, retained; "offline" is the
// terminal's MQTT last will.
func (t Topics) Status(tid string) string { return t.Root + "/t/" + tid + "/" + leafStatus }

// Config carries the retained desired configuration for tid.
func (t Topics) Config(tid string) string { return t.Root + "/t/" + tid + "/" + leafConfig }

// GroupConfig carries the retained desired configuration for a terminal group.
func (t Topics) GroupConfig(group string) string { return t.Root + "/g/" + group + "/cfg" }

// RequestFilter matches every terminal's request topic.
func (t Topics) RequestFilter() string { return t.Root + "/t/+/" + leafRequest }

// SharedRequestFilter is RequestFilter under the gateways' shared subscription.
func (t Topics) SharedRequestFilter() string { return "$share/" + t.Group + "/" + t.RequestFilter() }

// StatusFilter matches every terminal's status topic.
func (t Topics) StatusFilter() string { return t.Root + "/t/+/" + leafStatus }

// TerminalFromTopic extracts the terminal id from a per-terminal topic:
// exactly {Root}/t/{tid}/{leaf} with leaf one of req, resp, status, cfg and
// tid a valid terminal id. ok is false for any other shape, including
// wildcards, empty levels and extra levels, so that the id the gateway
// trusts (it picks the key by it) is never a pattern or a path.
func (t Topics) TerminalFromTopic(topic string) (tid string, ok bool) {
	// No concatenation: this runs for every message on the hot path.
	if t.Root == "" || !strings.HasPrefix(topic, t.Root) || !strings.HasPrefix(topic[len(t.Root):], "/t/") {
		return "", false
	}
	rest := topic[len(t.Root)+3:]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	tid = rest[:i]
	if !ValidID(tid, MaxTerminalIDLen) {
		return "", false
	}
	switch rest[i+1:] {
	case leafRequest, leafReply, leafStatus, leafConfig:
		return tid, true
	}
	return "", false
}
