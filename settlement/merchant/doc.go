// Package merchant owns what a merchant sees of settlement: the merchant
// API (/m/v1/..., bearer API keys), the merchant web page (/m/, a session
// cookie after logging in with the key), and the merchant API keys
// themselves (issued by an operator, stored hashed, revocable).
//
// Isolation (design promise 7) is structural: every read goes through the
// merchant the credential belongs to, never through a merchant named in
// the request, and every "not yours" answer is produced by the same code
// path as "does not exist", so the two are byte-identical.
//
// Statements and settlement files belong to clearing; this package reads
// them through the small Statements interface. StoreStatements implements
// it over the settlement store (business-day windows, no fees) until the
// clearing package is wired in.
package merchant
