-- Indexes for the e-CNY receipts the scheduler looks at on every pass
-- (store/ecny_held.go): the receipts no window has paid yet (the held
-- ones and those of windows not settled yet: few, while ecny_unsynced
-- keeps every receipt ever paid) and the wallet syncs by time, which are
-- pruned once no receipt that may still be ingested lies before them.
CREATE INDEX ecny_unsynced_unpaid ON ecny_unsynced (at) WHERE released_window IS NULL;
CREATE INDEX ecny_syncs_at ON ecny_syncs (at);
