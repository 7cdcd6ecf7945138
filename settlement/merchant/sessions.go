package merchant

// Web sessions. The cookie holds a random session id, never the key; the
// table is in memory (a restart logs merchants out, which is acceptable for
// a page they visit to check takings) and bounded by SessionsMax.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// Named bounds.
const (
	// SessionsMax is the most live sessions; a login beyond it is refused
	// as busy after expired sessions are swept.
	SessionsMax = 10_000
	// SessionTTLDefault is how long a session lives after login.
	SessionTTLDefault = 8 * time.Hour
	sessionIDBytes    = 32
)

type session struct {
	merchant string
	keyID    string
	csrf     string
	expires  time.Time
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
}

func newSessions(ttl time.Duration) *sessions {
	if ttl <= 0 {
		ttl = SessionTTLDefault
	}
	return &sessions{m: make(map[string]*session), ttl: ttl}
}

func randomToken() string {
	var b [sessionIDBytes]byte
	rand.Read(b[:]) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session; ok is false when the table is full.
func (s *sessions) create(now time.Time, p Principal) (id string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= SessionsMax {
		for k, v := range s.m {
			if !now.Before(v.expires) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= SessionsMax {
			return "", false
		}
	}
	id = randomToken()
	s.m[id] = &session{merchant: p.Merchant, keyID: p.KeyID, csrf: randomToken(), expires: now.Add(s.ttl)}
	return id, true
}

// get returns a copy of a live session.
func (s *sessions) get(now time.Time, id string) (session, bool) {
	if len(id) != base64.RawURLEncoding.EncodedLen(sessionIDBytes) {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if !now.Before(v.expires) {
		delete(s.m, id)
		return session{}, false
	}
	return *v, true
}

// end removes a session if csrf matches its token.
func (s *sessions) end(id, csrf string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok || subtle.ConstantTimeCompare([]byte(v.csrf), []byte(csrf)) != 1 {
		return false
	}
	delete(s.m, id)
	return true
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}
