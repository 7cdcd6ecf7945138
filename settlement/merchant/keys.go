package merchant

// Merchant API keys. A key is "spm_<id>_<secret>": the id (8 random bytes,
// hex) finds the row, the secret (32 random bytes, base64url) is checked
// against SHA-256(salt || secret) with a per-key random salt and a
// constant-time compare. A fast hash is enough because the secret is 256
// random bits: there is nothing to brute-force that a slow hash would
// protect. The key itself is shown once, by Issue, and never stored.
//
// The table lives next to the settlement store's tables but is owned here,
// with its own accessor and its own connection(s): the store's Store
// interface has no key methods and exposes no database handle, and adding
// either would couple two packages that change for different reasons.
// The schema is created idempotently (CREATE ... IF NOT EXISTS) under
// schema version keysSchemaVersion; a later change adds a new version.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite"

	"scenepay/settlement/handoff"
)

// Named bounds.
const (
	// KeysPerMerchantMax is the most active (unrevoked) keys a merchant may hold.
	KeysPerMerchantMax = 16
	// KeyLabelLenMax bounds the operator's note on a key.
	KeyLabelLenMax = 64
	// keyConnsMax bounds the PostgreSQL connections of the key accessor.
	keyConnsMax = 4
	keyPrefix   = "spm_"
	keyIDBytes  = 8
	keySecBytes = 32
	keySaltLen  = 16
)

// keyLenMax bounds a presented key before any parsing.
var keyLenMax = len(keyPrefix) + 2*keyIDBytes + 1 + base64.RawURLEncoding.EncodedLen(keySecBytes)

// Key errors.
var (
	// ErrKeyInvalid: the key is malformed, unknown, wrong or revoked. One
	// error for all four, so a caller cannot tell which.
	ErrKeyInvalid = errors.New("merchant key: invalid or revoked")
	// ErrKeyLimit: the merchant already holds KeysPerMerchantMax active keys.
	ErrKeyLimit = errors.New("merchant key: too many active keys for this merchant")
	// ErrKeyNotFound: Revoke of an id that does not exist.
	ErrKeyNotFound = errors.New("merchant key: no such key id")
	// ErrBadMerchant: an empty or oversize merchant id or label.
	ErrBadMerchant = errors.New("merchant key: merchant id must be 1..64 printable ASCII characters")
)

// Issued is a newly issued key. Key is the only copy of the secret.
type Issued struct {
	ID       string
	Merchant string
	Key      string
}

// KeyInfo describes a stored key (never its secret).
type KeyInfo struct {
	ID        string
	Merchant  string
	Label     string
	CreatedAt time.Time
	Revoked   bool
}

// Principal is who a valid key belongs to.
type Principal struct {
	Merchant string
	KeyID    string
}

// keyRow is one stored key.
type keyRow struct {
	merchant  string
	label     string
	salt      []byte
	hash      []byte
	createdAt int64 // Unix microseconds
	revokedAt int64 // 0: active
}

// keyDB is what Keys needs of a database.
type keyDB interface {
	insert(ctx context.Context, id string, r keyRow) error
	lookup(ctx context.Context, id string) (keyRow, bool, error)
	activeCount(ctx context.Context, merchant string) (int, error)
	revoke(ctx context.Context, id string, at int64) (bool, error)
	list(ctx context.Context, merchant string) ([]KeyInfo, error)
	close() error
}

// Keys issues, checks and revokes merchant API keys.
type Keys struct {
	db    keyDB
	clock func() time.Time
}

func newKeys(db keyDB) *Keys { return &Keys{db: db, clock: time.Now} }

// Close releases the accessor's connections.
func (k *Keys) Close() error { return k.db.close() }

func hashSecret(salt, secret []byte) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(secret)
	return h.Sum(nil)
}

func checkMerchantID(m string, max int, emptyOK bool) error {
	if (m == "" && !emptyOK) || len(m) > max {
		return ErrBadMerchant
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 0x20 || m[i] > 0x7e {
			return ErrBadMerchant
		}
	}
	return nil
}

// Issue creates a key for merchant. The returned Key is shown once; only
// its salted hash is stored. Two concurrent Issues may briefly let a
// merchant exceed KeysPerMerchantMax by one; the bound guards against a
// runaway script, not a race.
func (k *Keys) Issue(ctx context.Context, merchant, label string) (Issued, error) {
	if checkMerchantID(merchant, handoff.MerchantLenMax, false) != nil || checkMerchantID(label, KeyLabelLenMax, true) != nil {
		return Issued{}, ErrBadMerchant
	}
	n, err := k.db.activeCount(ctx, merchant)
	if err != nil {
		return Issued{}, err
	}
	if n >= KeysPerMerchantMax {
		return Issued{}, ErrKeyLimit
	}
	var idb [keyIDBytes]byte
	var sec [keySecBytes]byte
	salt := make([]byte, keySaltLen)
	rand.Read(idb[:]) // crypto/rand.Read never fails (Go 1.24+)
	rand.Read(sec[:])
	rand.Read(salt)
	id := hex.EncodeToString(idb[:])
	secret := base64.RawURLEncoding.EncodeToString(sec[:])
	r := keyRow{merchant: merchant, label: label, salt: salt, hash: hashSecret(salt, []byte(secret)),
		createdAt: k.clock().UnixMicro()}
	if err := k.db.insert(ctx, id, r); err != nil {
		return Issued{}, err
	}
	return Issued{ID: id, Merchant: merchant, Key: keyPrefix + id + "_" + secret}, nil
}

// splitKey parses "spm_<id>_<secret>" without allocating the secret.
func splitKey(key string) (id, secret string, ok bool) {
	if len(key) > keyLenMax || !strings.HasPrefix(key, keyPrefix) {
		return "", "", false
	}
	rest := key[len(keyPrefix):]
	if len(rest) < 2*keyIDBytes+2 || rest[2*keyIDBytes] != '_' {
		return "", "", false
	}
	id, secret = rest[:2*keyIDBytes], rest[2*keyIDBytes+1:]
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", false
		}
	}
	return id, secret, true
}

// dummySalt and dummyHash keep the work of an unknown key id close to that
// of a known one (one hash, one compare).
var dummySalt = make([]byte, keySaltLen)
var dummyHash = hashSecret(dummySalt, nil)

// Authenticate returns the merchant a key belongs to, or ErrKeyInvalid.
// Database faults are returned as they come.
func (k *Keys) Authenticate(ctx context.Context, key string) (Principal, error) {
	id, secret, ok := splitKey(key)
	if !ok {
		return Principal{}, ErrKeyInvalid
	}
	r, found, err := k.db.lookup(ctx, id)
	if err != nil {
		return Principal{}, err
	}
	salt, want := dummySalt, dummyHash
	if found {
		salt, want = r.salt, r.hash
	}
	got := hashSecret(salt, []byte(secret))
	if subtle.ConstantTimeCompare(got, want) != 1 || !found || r.revokedAt != 0 {
		return Principal{}, ErrKeyInvalid
	}
	return Principal{Merchant: r.merchant, KeyID: id}, nil
}

// Active reports whether key id is stored and not revoked (sessions
// re-check it so that revoking a key ends its sessions).
func (k *Keys) Active(ctx context.Context, id string) (bool, error) {
	r, found, err := k.db.lookup(ctx, id)
	if err != nil {
		return false, err
	}
	return found && r.revokedAt == 0, nil
}

// Revoke disables a key at once. Revoking a revoked key is not an error.
func (k *Keys) Revoke(ctx context.Context, id string) error {
	ok, err := k.db.revoke(ctx, id, k.clock().UnixMicro())
	if err != nil {
		return err
	}
	if !ok {
		return ErrKeyNotFound
	}
	return nil
}

// List describes a merchant's keys, newest first.
func (k *Keys) List(ctx context.Context, merchant string) ([]KeyInfo, error) {
	return k.db.list(ctx, merchant)
}

// ---- SQLite ----

const keysSchemaVersion = 1

const sqliteKeysSchema = `CREATE TABLE IF NOT EXISTS merchant_keys (
    key_id     TEXT PRIMARY KEY,
    merchant   TEXT NOT NULL,
    label      TEXT NOT NULL,
    salt       BLOB NOT NULL,
    hash       BLOB NOT NULL,            -- SHA-256(salt || secret)
    created_at INTEGER NOT NULL,         -- Unix microseconds UTC
    revoked_at INTEGER NOT NULL DEFAULT 0 -- 0: active
) STRICT;
CREATE INDEX IF NOT EXISTS merchant_keys_merchant ON merchant_keys (merchant);`

type sqliteKeys struct{ db *sql.DB }

// OpenKeysSQLite opens the key table in the SQLite file of the embedded
// settlement store (its own connection; WAL lets it share the file).
func OpenKeysSQLite(ctx context.Context, path string) (*Keys, error) {
	dsn := "file:" + url.PathEscape(path) +
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("merchant keys: open sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, sqliteKeysSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("merchant keys: schema v%d: %w", keysSchemaVersion, err)
	}
	return newKeys(&sqliteKeys{db: db}), nil
}

func (s *sqliteKeys) close() error { return s.db.Close() }

func (s *sqliteKeys) insert(ctx context.Context, id string, r keyRow) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO merchant_keys (key_id, merchant, label, salt, hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, id, r.merchant, r.label, r.salt, r.hash, r.createdAt)
	if err != nil {
		return fmt.Errorf("merchant keys: insert: %w", err)
	}
	return nil
}

func (s *sqliteKeys) lookup(ctx context.Context, id string) (keyRow, bool, error) {
	var r keyRow
	err := s.db.QueryRowContext(ctx, `SELECT merchant, label, salt, hash, created_at, revoked_at
		FROM merchant_keys WHERE key_id = ?`, id).Scan(&r.merchant, &r.label, &r.salt, &r.hash, &r.createdAt, &r.revokedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("merchant keys: lookup: %w", err)
	}
	return r, true, nil
}

func (s *sqliteKeys) activeCount(ctx context.Context, merchant string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM merchant_keys WHERE merchant = ? AND revoked_at = 0`,
		merchant).Scan(&n); err != nil {
		return 0, fmt.Errorf("merchant keys: count: %w", err)
	}
	return n, nil
}

func (s *sqliteKeys) revoke(ctx context.Context, id string, at int64) (bool, error) {
	if _, err := s.db.ExecContext(ctx, `UPDATE merchant_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at = 0`,
		at, id); err != nil {
		return false, fmt.Errorf("merchant keys: revoke: %w", err)
	}
	_, found, err := s.lookup(ctx, id)
	return found, err
}

func (s *sqliteKeys) list(ctx context.Context, merchant string) ([]KeyInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key_id, label, created_at, revoked_at FROM merchant_keys
		WHERE merchant = ? ORDER BY created_at DESC, key_id LIMIT ?`, merchant, keysListMax)
	if err != nil {
		return nil, fmt.Errorf("merchant keys: list: %w", err)
	}
	defer rows.Close()
	var out []KeyInfo
	for rows.Next() {
		var ki KeyInfo
		var created, revoked int64
		if err := rows.Scan(&ki.ID, &ki.Label, &created, &revoked); err != nil {
			return nil, fmt.Errorf("merchant keys: list: %w", err)
		}
		ki.Merchant, ki.CreatedAt, ki.Revoked = merchant, time.UnixMicro(created).UTC(), revoked != 0
		out = append(out, ki)
	}
	return out, rows.Err()
}

// keysListMax bounds List (active and revoked keys together).
const keysListMax = 1000

// ---- PostgreSQL ----

const pgKeysSchema = `CREATE TABLE IF NOT EXISTS merchant_keys (
    key_id     text PRIMARY KEY,
    merchant   text COLLATE "C" NOT NULL,
    label      text NOT NULL,
    salt       bytea NOT NULL,
    hash       bytea NOT NULL,           -- SHA-256(salt || secret)
    created_at bigint NOT NULL,          -- Unix microseconds UTC
    revoked_at bigint NOT NULL DEFAULT 0 -- 0: active
);
CREATE INDEX IF NOT EXISTS merchant_keys_merchant ON merchant_keys (merchant)`

// keysLockKey serialises concurrent schema creation (pg_advisory_xact_lock).
const keysLockKey = 0x5e77_4b45

type pgKeys struct {
	cfg   *pgx.ConnConfig
	conns chan *pgx.Conn // idle connections
	slots chan struct{}  // one token per open connection, at most keyConnsMax
}

// OpenKeysPostgres opens the key table in the settlement store's
// PostgreSQL database; the schema comes from the connection string's
// search_path, as for the store.
func OpenKeysPostgres(ctx context.Context, connString string) (*Keys, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("merchant keys: %w", err)
	}
	p := &pgKeys{cfg: cfg, conns: make(chan *pgx.Conn, keyConnsMax), slots: make(chan struct{}, keyConnsMax)}
	err = p.with(ctx, func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(keysLockKey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, pgKeysSchema); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("merchant keys: schema v%d: %w", keysSchemaVersion, err)
	}
	return newKeys(p), nil
}

// with runs fn on a pooled connection. A connection that saw an error is
// closed rather than returned, so a broken one is never reused.
func (p *pgKeys) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	var c *pgx.Conn
	select {
	case c = <-p.conns:
	default:
		select {
		case c = <-p.conns:
		case p.slots <- struct{}{}:
			var err error
			if c, err = pgx.ConnectConfig(ctx, p.cfg); err != nil {
				<-p.slots
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := fn(c)
	if err != nil || c.IsClosed() {
		c.Close(context.Background())
		<-p.slots
		return err
	}
	p.conns <- c
	return nil
}

func (p *pgKeys) close() error {
	for {
		select {
		case c := <-p.conns:
			c.Close(context.Background())
			<-p.slots
		default:
			return nil
		}
	}
}

func (p *pgKeys) insert(ctx context.Context, id string, r keyRow) error {
	err := p.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO merchant_keys (key_id, merchant, label, salt, hash, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, id, r.merchant, r.label, r.salt, r.hash, r.createdAt)
		return err
	})
	if err != nil {
		return fmt.Errorf("merchant keys: insert: %w", err)
	}
	return nil
}

func (p *pgKeys) lookup(ctx context.Context, id string) (keyRow, bool, error) {
	var r keyRow
	found := true
	err := p.with(ctx, func(c *pgx.Conn) error {
		err := c.QueryRow(ctx, `SELECT merchant, label, salt, hash, created_at, revoked_at
			FROM merchant_keys WHERE key_id = $1`, id).Scan(&r.merchant, &r.label, &r.salt, &r.hash, &r.createdAt, &r.revokedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	if err != nil {
		return r, false, fmt.Errorf("merchant keys: lookup: %w", err)
	}
	return r, found, nil
}

func (p *pgKeys) activeCount(ctx context.Context, merchant string) (int, error) {
	var n int
	err := p.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM merchant_keys WHERE merchant = $1 AND revoked_at = 0`, merchant).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("merchant keys: count: %w", err)
	}
	return n, nil
}

func (p *pgKeys) revoke(ctx context.Context, id string, at int64) (bool, error) {
	var found bool
	err := p.with(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `UPDATE merchant_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at = 0`, at, id); err != nil {
			return err
		}
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM merchant_keys WHERE key_id = $1)`, id).Scan(&found)
	})
	if err != nil {
		return false, fmt.Errorf("merchant keys: revoke: %w", err)
	}
	return found, nil
}

func (p *pgKeys) list(ctx context.Context, merchant string) ([]KeyInfo, error) {
	var out []KeyInfo
	err := p.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT key_id, label, created_at, revoked_at FROM merchant_keys
			WHERE merchant = $1 ORDER BY created_at DESC, key_id LIMIT $2`, merchant, keysListMax)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ki KeyInfo
			var created, revoked int64
			if err := rows.Scan(&ki.ID, &ki.Label, &created, &revoked); err != nil {
				return err
			}
			ki.Merchant, ki.CreatedAt, ki.Revoked = merchant, time.UnixMicro(created).UTC(), revoked != 0
			out = append(out, ki)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("merchant keys: list: %w", err)
	}
	return out, nil
}
