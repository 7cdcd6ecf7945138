-- Settlement store, embedded SQLite. Times are Unix microseconds UTC,
-- money is integer fen. STRICT tables refuse a value of the wrong type.
CREATE TABLE sources (
    source     TEXT PRIMARY KEY,
    high_water INTEGER NOT NULL DEFAULT 0, -- last LSN covered by an ingested batch
    watermark  INTEGER NOT NULL DEFAULT 0  -- gateway time up to which everything is handed off
) STRICT;

CREATE TABLE batches (
    id          TEXT PRIMARY KEY,          -- handoff.BatchID(source, first_lsn, last_lsn)
    source      TEXT NOT NULL,
    first_lsn   INTEGER NOT NULL,
    last_lsn    INTEGER NOT NULL,
    row_count   INTEGER NOT NULL,
    digest      BLOB NOT NULL,             -- SHA-256 of the rows: a re-sent id with other rows is a conflict
    watermark   INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL
) STRICT;

CREATE TABLE txns (
    source    TEXT NOT NULL,
    lsn       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    merchant  TEXT NOT NULL,
    terminal  TEXT NOT NULL,
    scene     TEXT NOT NULL,
    op        TEXT NOT NULL,
    inst_kind TEXT NOT NULL,
    account   TEXT NOT NULL,
    amount    INTEGER NOT NULL,
    auth      TEXT NOT NULL,
    txn       INTEGER NOT NULL,
    orig      INTEGER NOT NULL,
    batch_id  TEXT NOT NULL,
    PRIMARY KEY (source, lsn)
) STRICT;

CREATE INDEX txns_merchant_at ON txns (merchant, at, source, lsn);
