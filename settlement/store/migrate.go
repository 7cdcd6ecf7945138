package store

import (
	"crypto/sha256"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"scenepay/settlement/handoff"
)

// Migrations are embedded so that a binary carries its schema. Files are
// named NNNN_name.sql; versions must run 1, 2, 3... without holes, and an
// applied version is never edited (add a new file instead).
//
//go:embed migrations/postgres/*.sql migrations/sqlite/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(dialect string) ([]migration, error) {
	dir := "migrations/" + dialect
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("settlement store: migration file %q is not NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(migrationFS, dir+"/"+name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("settlement store: migrations out of sequence at %s", m.name)
		}
	}
	return ms, nil
}

// digest fingerprints a batch's rows so that a re-sent batch id carrying
// different rows is caught as a conflict instead of silently skipped. The
// watermark is not part of it: a later re-send may carry a later one.
func digest(b *handoff.Batch) []byte {
	h := sha256.New()
	buf := make([]byte, 0, 256)
	for i := range b.Rows {
		r := &b.Rows[i]
		buf = buf[:0]
		buf = strconv.AppendUint(buf, r.LSN, 10)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, r.At.UnixMicro(), 10)
		for _, s := range [...]string{r.Merchant, r.Terminal, r.Scene, r.Op, r.InstKind, r.Account, r.Auth} {
			buf = append(buf, 0)
			buf = append(buf, s...)
		}
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, r.Amount, 10)
		buf = append(buf, 0)
		buf = strconv.AppendUint(buf, r.Txn, 10)
		buf = append(buf, 0)
		buf = strconv.AppendUint(buf, r.Orig, 10)
		// Legs only when present, so a batch without legs keeps the
		// digest it had before rows could carry them.
		for _, l := range r.Legs {
			buf = append(buf, 0)
			buf = append(buf, l.Kind...)
			buf = append(buf, 0)
			buf = append(buf, l.Payee...)
			buf = append(buf, 0)
			buf = strconv.AppendInt(buf, l.Amount, 10)
		}
		// The unsynced flag likewise only when set.
		if r.Unsynced {
			buf = append(buf, 0, 'u')
		}
		buf = append(buf, '\n')
		h.Write(buf)
	}
	// Wallet syncs only when present, after a marker no row line starts with.
	for _, s := range b.Syncs {
		buf = append(buf[:0], 's', 0)
		buf = strconv.AppendUint(buf, s.LSN, 10)
		buf = append(buf, 0)
		buf = append(buf, s.Account...)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, s.At.UnixMicro(), 10)
		buf = append(buf, '\n')
		h.Write(buf)
	}
	return h.Sum(nil)
}
