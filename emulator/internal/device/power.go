package device

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Power and link faults. A terminal in the field loses power in the middle
// of a transaction and loses its link for minutes at a time; these methods
// let a fleet rehearse both against a live gateway.

// PublishOnly publishes s once and does not wait for the reply: the last
// thing a terminal does before it loses power mid-transaction. Its txn id
// was reserved in the Store by Prepare, so a new Device over the same Store
// (the terminal after its reboot) resends s and gets the gateway's stored
// reply instead of a second effect.
func (d *Device) PublishOnly(s Sealed) error {
	select {
	case <-d.closed:
		return ErrNotConnected
	default:
	}
	tok := d.client.Publish(d.cfg.Topics.Request(d.cfg.TID), 1, false, s.Payload)
	d.c.published.Add(1)
	// Wait for the broker's PUBACK (bounded) so that the request has left the
	// terminal: the reboot is "after send", not "before send".
	if !tok.WaitTimeout(d.cfg.ConnectTimeout) {
		return fmt.Errorf("device %s txn %d: publish: %w", d.cfg.TID, s.Req.Txn, ErrTimeout)
	}
	return tok.Error()
}

// Offline drops the link for dur (a clean disconnect, so no will fires and
// auto-reconnect does not run), then dials again with full-jitter backoff.
// Requests made meanwhile fail to publish and time out, which drives the
// retry and reversal paths as a dead cellular link would.
func (d *Device) Offline(ctx context.Context, dur time.Duration) error {
	d.connected.Store(false)
	d.client.Disconnect(0)
	if !sleepCtx(ctx.Done(), dur) {
		return ctx.Err()
	}
	for attempt := 0; ; attempt++ {
		tok := d.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return ctx.Err()
		case <-d.closed:
			return ErrNotConnected
		}
		if tok.Error() == nil {
			return nil
		}
		if !sleepCtx(ctx.Done(), fullJitter(d.cfg.BackoffBase, d.cfg.BackoffCap, attempt)) {
			return ctx.Err()
		}
	}
}

// Kick makes the broker drop this terminal's connection without the
// terminal asking: a second client connects under the same client id (the
// broker ends the first session's connection, MQTT 3.1.1 section 3.1.4)
// and leaves at once. The device sees its connection lost and reconnects
// through its own full-jitter backoff, as after a cell handover.
func (d *Device) Kick(ctx context.Context) error {
	o := mqtt.NewClientOptions().AddBroker(d.cfg.Broker).SetClientID(d.cfg.TID).
		SetCleanSession(false).SetUsername(d.cfg.Username).SetPassword(d.cfg.Password).
		SetConnectTimeout(d.cfg.ConnectTimeout).SetAutoReconnect(false)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if tok.Error() != nil {
		return fmt.Errorf("device %s: kick: %w", d.cfg.TID, tok.Error())
	}
	c.Disconnect(0)
	return nil
}
