package terminals

import "strings"

// Topic scheme of protocol v1. Every terminal owns the subtree
// scp/v1/t/{terminal id}/ and nothing else; the broker ACL confines it there
// (deploy/mosquitto). The gateway consumes requests through a shared
// subscription so that several gateway instances can split the load.
const (
	TopicRoot = "scp/v1"
	// SharedGroup is the shared-subscription group of gateway instances.
	SharedGroup = "scp-gateway"
	// RequestFilter matches every terminal's request topic.
	RequestFilter = TopicRoot + "/t/+/req"
	// SharedRequestFilter is RequestFilter under the gateways' shared subscription.
	SharedRequestFilter = "$share/" + SharedGroup + "/" + RequestFilter
	// StatusFilter matches every terminal's status topic.
	StatusFilter = TopicRoot + "/t/+/status"
)

// RequestTopic is where terminal tid publishes requests (QoS 1).
func RequestTopic(tid string) string { return TopicRoot + "/t/" + tid + "/req" }

// ReplyTopic is where the gateway publishes replies for tid (QoS 1).
func ReplyTopic(tid string) string { return TopicRoot + "/t/" + tid + "/resp" }

// StatusTopic carries "online"/"offline" for tid, retained; "offline" is the
// terminal's MQTT last will.
func StatusTopic(tid string) string { return TopicRoot + "/t/" + tid + "/status" }

// ConfigTopic carries the retained desired configuration for tid.
func ConfigTopic(tid string) string { return TopicRoot + "/t/" + tid + "/cfg" }

// GroupConfigTopic carries the retained desired configuration for a terminal group.
func GroupConfigTopic(group string) string { return TopicRoot + "/g/" + group + "/cfg" }

// TerminalFromTopic extracts the terminal id from a per-terminal topic
// (scp/v1/t/{tid}/...). ok is false for any other shape.
func TerminalFromTopic(topic string) (tid string, ok bool) {
	const prefix = TopicRoot + "/t/"
	if !strings.HasPrefix(topic, prefix) {
		return "", false
	}
	rest := topic[len(prefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	tid = rest[:i]
	if !ValidID(tid, MaxTerminalIDLen) {
		return "", false
	}
	return tid, true
}
