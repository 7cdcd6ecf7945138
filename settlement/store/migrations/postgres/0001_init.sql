-- Settlement store, PostgreSQL. Times are timestamptz (UTC), money is
-- BIGINT fen. Unqualified names: the schema comes from search_path.
-- Ids are ASCII and compared with COLLATE "C" (byte order): the keyset
-- order (at, source, lsn) is then the same as SQLite's and does not
-- depend on the server's locale.
CREATE TABLE sources (
    source     text COLLATE "C" PRIMARY KEY,
    high_water bigint NOT NULL DEFAULT 0,  -- last LSN covered by an ingested batch
    watermark  timestamptz                 -- gateway time up to which everything is handed off
);

CREATE TABLE batches (
    id          text PRIMARY KEY,          -- handoff.BatchID(source, first_lsn, last_lsn)
    source      text NOT NULL REFERENCES sources (source),
    first_lsn   bigint NOT NULL,
    last_lsn    bigint NOT NULL,
    row_count   integer NOT NULL,
    digest      bytea NOT NULL,            -- SHA-256 of the rows: a re-sent id with other rows is a conflict
    watermark   timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    CHECK (first_lsn <= last_lsn)
);

CREATE TABLE txns (
    source    text COLLATE "C" NOT NULL,
    lsn       bigint NOT NULL,
    at        timestamptz NOT NULL,
    merchant  text COLLATE "C" NOT NULL,
    terminal  text NOT NULL,
    scene     text NOT NULL,
    op        text NOT NULL,
    inst_kind text NOT NULL,
    account   text NOT NULL,
    amount    bigint NOT NULL CHECK (amount <> 0),
    auth      text NOT NULL,
    txn       bigint NOT NULL,
    orig      bigint NOT NULL,
    batch_id  text NOT NULL,
    PRIMARY KEY (source, lsn)
);

-- The statement and listing queries: one merchant, a time range, keyset
-- order (at, source, lsn). INCLUDE makes Totals an index-only scan.
CREATE INDEX txns_merchant_at ON txns (merchant, at, source, lsn) INCLUDE (op, amount);
