package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
)

// openAuditLog returns the audit logger: every operator change goes to the
// process log (logger=audit) and, as JSON, to an append-only file in the data
// directory, which outlives log rotation and is what an auditor reads. The
// file is opened O_APPEND so that lines are only ever added; a write error is
// reported by the handler and does not stop the change (the change is
// already journaled; the process log still has the line).
func openAuditLog(path string, log *slog.Logger) (*slog.Logger, func() error, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	h := fanout{log.With("logger", "audit").Handler(), slog.NewJSONHandler(f, nil).WithAttrs([]slog.Attr{slog.String("logger", "audit")})}
	return slog.New(h), f.Close, nil
}

// fanout sends each record to every handler.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
