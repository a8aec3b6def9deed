// Package session gives each browser a random session id in an
// HMAC-signed, HttpOnly cookie. The id is the owner of the browser's
// exports at the backend; the signature means a browser cannot pick
// someone else's id, and the BFF keeps no session state, so any BFF
// instance with the same keys serves any browser.
//
// The cookie's value is id.issued.signature, the signature an HMAC-SHA256
// over id and issue time (Unix seconds): a session ends one lifetime after
// its cookie was issued, whatever the browser does with Max-Age. A cookie
// in use is re-issued (same id, new time) once a quarter of its lifetime
// has gone by, so an active browser keeps its session for as long as it
// stays active. Several keys may be listed: the first signs, all verify,
// so keys rotate without ending sessions (docs/security.md).
package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CookieName is the session cookie's name.
const CookieName = "exportstream_session"

// MinSecretLen is the least key length accepted (bytes).
const MinSecretLen = 32

// idLen is the length of an id: 16 random bytes in unpadded base64url.
const idLen = 22

// ErrExpired is a cookie one of the keys signed whose lifetime is over: the
// browser had a session, and it has ended.
var ErrExpired = errors.New("session expired")

// Manager issues and verifies session cookies.
type Manager struct {
	keys     [][]byte // keys[0] signs; every one verifies
	secure   bool
	lifetime time.Duration
	// now is the clock; tests replace it.
	now func() time.Time
}

// New returns a manager signing with keys[0] and accepting cookies signed
// by any of keys; secure marks cookies Secure (set it behind HTTPS). A
// cookie is valid for lifetime after it was issued or last refreshed.
func New(keys [][]byte, secure bool, lifetime time.Duration) (*Manager, error) {
	if len(keys) == 0 {
		return nil, errors.New("no session key")
	}
	for i, k := range keys {
		if len(k) < MinSecretLen {
			return nil, fmt.Errorf("session key %d of %d is %d bytes: each must be at least %d", i+1, len(keys), len(k), MinSecretLen)
		}
	}
	if lifetime < time.Second {
		return nil, fmt.Errorf("session lifetime %v: must be at least 1s", lifetime)
	}
	return &Manager{keys: keys, secure: secure, lifetime: lifetime, now: time.Now}, nil
}

// ParseKeys splits a comma-separated list of keys (SESSION_SECRET), the
// signing key first; blanks around a key are dropped, a key may not hold a
// comma.
func ParseKeys(list string) [][]byte {
	var keys [][]byte
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, []byte(k))
		}
	}
	return keys
}

// RandomSecret returns a fresh key, for when none is configured
// (sessions then do not survive a restart or span instances).
func RandomSecret() []byte {
	b := make([]byte, MinSecretLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return b
}

// SetClock makes the manager read the time from now (tests: a fake clock).
func (m *Manager) SetClock(now func() time.Time) { m.now = now }

// Session is a browser's valid session cookie.
type Session struct {
	ID string
	// Stale is a cookie due to be re-issued: a quarter of its lifetime
	// has gone by, or a key other than the signing one signed it.
	Stale bool
}

// Read returns the session of r's cookie. ok is false when r has no cookie
// any key verifies (none, forged, or signed by a retired key: no session);
// err is ErrExpired when it has one that a key signed but whose lifetime
// is over.
func (m *Manager) Read(r *http.Request) (s Session, ok bool, err error) {
	cookies := r.CookiesNamed(CookieName)
	if len(cookies) == 0 {
		return Session{}, false, nil
	}
	id, issued, key, ok := m.verify(cookies[0].Value)
	if !ok {
		return Session{}, false, nil
	}
	age := m.now().Sub(issued)
	if age >= m.lifetime {
		return Session{}, false, ErrExpired
	}
	return Session{ID: id, Stale: key > 0 || age >= m.lifetime/4}, true, nil
}

// Issue sets a cookie with a new session id on w and returns the id.
func (m *Manager) Issue(w http.ResponseWriter) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	m.Refresh(w, id)
	return id
}

// Refresh sets a cookie for session id, issued now with the signing key,
// on w. Its Max-Age is two lifetimes: for the second the browser still
// sends it, and is told its session expired rather than silently given a
// new one.
func (m *Manager) Refresh(w http.ResponseWriter, id string) {
	payload := id + "." + strconv.FormatInt(m.now().Unix(), 10)
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    payload + "." + sign(m.keys[0], payload),
		Path:     "/",
		MaxAge:   int(2 * m.lifetime.Seconds()),
		HttpOnly: true,
		Secure:   m.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

func sign(key []byte, payload string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verify returns the id and issue time of a value one of the keys signed,
// and which key. A value in the format without an issue time (id.sig) that
// a key signed is issued at the Unix epoch: authentic, and long expired.
func (m *Manager) verify(value string) (id string, issued time.Time, key int, ok bool) {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return "", time.Time{}, 0, false
	}
	payload, sig := value[:i], value[i+1:]
	id, unix, timed := strings.Cut(payload, ".")
	if len(id) != idLen {
		return "", time.Time{}, 0, false
	}
	var secs int64
	if timed {
		var err error
		if secs, err = strconv.ParseInt(unix, 10, 64); err != nil || secs <= 0 {
			return "", time.Time{}, 0, false
		}
	}
	for k, secret := range m.keys {
		if hmac.Equal([]byte(sig), []byte(sign(secret, payload))) {
			return id, time.Unix(secs, 0), k, true
		}
	}
	return "", time.Time{}, 0, false
}
