package store

// FirstTxnQuery exposes the PostgreSQL FirstTxnAt statement to the plan test.
const FirstTxnQuery = firstTxnQuery
