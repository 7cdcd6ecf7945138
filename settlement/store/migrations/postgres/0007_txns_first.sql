-- The earliest transaction time in txns, so that FirstTxnAt (asked on
-- every scheduler pass) reads one row here and scans only the small
-- txns_recent: no index of txns leads with at (txns_at_brin cannot give a
-- minimum), and min(at) over txns read the whole table. MoveRecent, the
-- only writer of txns, lowers it in the move's transaction; rows never
-- leave txns, so the minimum can only fall. NULL while txns is empty.
CREATE TABLE txns_first (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    at  timestamptz
);
INSERT INTO txns_first (at) SELECT min(at) FROM txns;
