package session_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/session"
)

func newManager(t *testing.T, secret string) *session.Manager {
	t.Helper()
	m, err := session.New([]byte(secret), true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAnIssuedCookieReadsBackAndIsLockedDown(t *testing.T) {
	m := newManager(t, strings.Repeat("s", 32))
	rec := httptest.NewRecorder()
	id := m.Issue(rec)
	cookie := rec.Result().Cookies()[0]
	if !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Lax, Path=/", cookie)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(cookie)
	if got, ok := m.Read(req); !ok || got != id {
		t.Errorf("Read = %q %v, want %q", got, ok, id)
	}
}

func TestForgedOrForeignCookiesAreRefused(t *testing.T) {
	m := newManager(t, strings.Repeat("s", 32))
	other := newManager(t, strings.Repeat("o", 32))
	rec := httptest.NewRecorder()
	other.Issue(rec)
	foreign := rec.Result().Cookies()[0].Value
	id, _, _ := strings.Cut(foreign, ".")
	for name, value := range map[string]string{
		"signed with another secret": foreign,
		"unsigned":                   id,
		"empty signature":            id + ".",
		"garbage":                    "%%%.",
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: value})
		if got, ok := m.Read(req); ok {
			t.Errorf("%s: accepted as %q", name, got)
		}
	}
}

// A cookie this manager signed, with its id changed and its signature
// kept: the signature must cover the id, or a browser could present any
// session id it likes (someone else's) with its own valid signature.
func TestAValidlySignedCookieWithAnotherIDIsRefused(t *testing.T) {
	m := newManager(t, strings.Repeat("s", 32))
	issue := func() (string, string) {
		rec := httptest.NewRecorder()
		id := m.Issue(rec)
		_, sig, _ := strings.Cut(rec.Result().Cookies()[0].Value, ".")
		return id, sig
	}
	id, sig := issue()
	other, _ := issue()
	changed := "A" + id[1:] // one character changed, still 22 of base64url
	if id[0] == 'A' {
		changed = "B" + id[1:]
	}
	for name, value := range map[string]string{
		"another session's id":  other + "." + sig,
		"one character changed": changed + "." + sig,
		"a made-up id":          strings.Repeat("A", len(id)) + "." + sig,
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: value})
		if got, ok := m.Read(req); ok {
			t.Errorf("%s with a valid signature of %s: accepted as %q", name, id, got)
		}
	}
	// The untouched cookie still reads back: the refusals are the ids'.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: id + "." + sig})
	if got, ok := m.Read(req); !ok || got != id {
		t.Errorf("the issued cookie: Read = %q %v, want %q", got, ok, id)
	}
}

func TestAShortSecretIsRefused(t *testing.T) {
	if _, err := session.New([]byte("short"), false, time.Hour); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
}
