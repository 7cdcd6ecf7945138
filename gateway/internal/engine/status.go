package engine

// HandleStatus records a terminal's status message ({root}/t/{tid}/status:
// "online" when it connects, "offline" as its MQTT last will). The status is
// runtime state for operators (GET /v1/terminals/{tid}), never journaled and
// never trusted for authorization: a status payload carries no MAC, and the
// broker ACL is what keeps a terminal to its own status topic. Unregistered
// terminals and other payloads are ignored, so the table stays bounded by the
// registry.
func (e *Engine) HandleStatus(topic string, payload []byte) {
	tid, ok := e.cfg.Topics.TerminalFromTopic(topic)
	if !ok || topic != e.cfg.Topics.Status(tid) {
		return
	}
	term, ok := e.reg.Get(tid)
	if !ok {
		return
	}
	switch string(payload) {
	case "online":
		term.SetStatus(true, e.cfg.Clock())
	case "offline":
		term.SetStatus(false, e.cfg.Clock())
	}
}
