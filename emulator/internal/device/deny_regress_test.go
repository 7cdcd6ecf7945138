package device

import "testing"

// TestDenyListReaderAheadOfAFreshGateway: a reader holds version 500 (the
// list of an earlier gateway data directory) when the gateway starts on a
// list never changed and republishes it: a full list at version 0 without
// cards, then an empty delta from 0 to 0. The delta is below the reader's
// version, so the reader takes the full list it names (version 0) and ends
// with no cards at version 0. Retained messages arrive in any order on
// subscribe, so the delta before the full list must end the same way.
func TestDenyListReaderAheadOfAFreshGateway(t *testing.T) {
	for _, order := range []string{"full first", "delta first"} {
		t.Run(order, func(t *testing.T) {
			l := NewDenyList()
			must := func(p []byte) {
				t.Helper()
				if err := l.Receive(testKcfg, p); err != nil {
					t.Fatal(err)
				}
			}
			must(denyFull(500, "county:OLD1", "county:OLD2"))
			must(denyDelta(500, 500, nil, nil))
			if l.Version() != 500 || !sameCards(l.Cards(), "county:OLD1", "county:OLD2") {
				t.Fatalf("stale list: v%d %v", l.Version(), l.Cards())
			}
			full, delta := denyFull(0), denyDelta(0, 0, nil, nil)
			if order == "full first" {
				must(full)
				must(delta)
			} else {
				must(delta)
				if l.Version() != 500 {
					t.Fatalf("the delta applied before its full list: v%d", l.Version())
				}
				must(full)
			}
			if l.Version() != 0 || len(l.Cards()) != 0 || l.Denied("county:OLD1") {
				t.Fatalf("after full 0 + delta 0->0: v%d %v, want version 0 and no cards", l.Version(), l.Cards())
			}
		})
	}
}
