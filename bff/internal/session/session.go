// Package session gives each browser a random session id in an
// HMAC-signed, HttpOnly cookie. The id is the owner of the browser's
// exports at the backend; the signature means a browser cannot pick
// someone else's id, and the BFF keeps no session state, so any BFF
// instance with the same secret serves any browser.
package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"
)

// CookieName is the session cookie's name.
const CookieName = "exportstream_session"

// MinSecretLen is the least secret length accepted (bytes).
const MinSecretLen = 32

// Manager issues and verifies session cookies.
type Manager struct {
	secret []byte
	secure bool
	maxAge time.Duration
}

// New returns a manager signing with secret; secure marks cookies Secure
// (set it behind HTTPS).
func New(secret []byte, secure bool, maxAge time.Duration) (*Manager, error) {
	if len(secret) < MinSecretLen {
		return nil, errors.New("session secret must be at least 32 bytes")
	}
	return &Manager{secret: secret, secure: secure, maxAge: maxAge}, nil
}

// RandomSecret returns a fresh secret, for when none is configured
// (sessions then do not survive a restart or span instances).
func RandomSecret() []byte {
	b := make([]byte, MinSecretLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return b
}

// Read returns the session id of r's valid cookie, if it has one.
func (m *Manager) Read(r *http.Request) (string, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return "", false
	}
	return m.verify(c.Value)
}

// Issue sets a new session cookie on w and returns its id.
func (m *Manager) Issue(w http.ResponseWriter) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    id + "." + m.sign(id),
		Path:     "/",
		MaxAge:   int(m.maxAge.Seconds()),
		HttpOnly: true,
		Secure:   m.secure,
		SameSite: http.SameSiteLaxMode,
	})
	return id
}

func (m *Manager) sign(id string) string {
	mac := hmac.New(sha256.New, m.secret)
	mac.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (m *Manager) verify(value string) (string, bool) {
	id, sig, ok := strings.Cut(value, ".")
	if !ok || len(id) != 22 || !hmac.Equal([]byte(sig), []byte(m.sign(id))) {
		return "", false
	}
	return id, true
}
