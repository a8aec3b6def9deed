package session_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/session"
)

// start is the fake clock's first reading.
var start = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// clock is a fake clock: tests move it on by hand.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time      { return c.now }
func (c *clock) Add(d time.Duration) { c.now = c.now.Add(d) }
func newClock() *clock               { return &clock{now: start} }
func newManager(t *testing.T, secret string) *session.Manager {
	t.Helper()
	return newManagerAt(t, newClock(), secret)
}

// newManagerAt is a manager with an hour's lifetime on clk, signing with
// the first of keys.
func newManagerAt(t *testing.T, clk *clock, keys ...string) *session.Manager {
	t.Helper()
	var raw [][]byte
	for _, k := range keys {
		raw = append(raw, []byte(k))
	}
	m, err := session.New(raw, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.SetClock(clk.Now)
	return m
}

// read presents value as the session cookie to m.
func read(m *session.Manager, value string) (session.Session, bool, error) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: value})
	return m.Read(req)
}

// issue returns a new session's id and cookie value.
func issue(m *session.Manager) (id, value string) {
	rec := httptest.NewRecorder()
	id = m.Issue(rec)
	return id, rec.Result().Cookies()[0].Value
}

func TestAnIssuedCookieReadsBackAndIsLockedDown(t *testing.T) {
	m := newManager(t, strings.Repeat("s", 32))
	rec := httptest.NewRecorder()
	id := m.Issue(rec)
	cookie := rec.Result().Cookies()[0]
	if !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Lax, Path=/", cookie)
	}
	if cookie.MaxAge != int((2 * time.Hour).Seconds()) {
		t.Errorf("cookie Max-Age %d, want two lifetimes (7200)", cookie.MaxAge)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(cookie)
	if got, ok, err := m.Read(req); !ok || err != nil || got.ID != id || got.Stale {
		t.Errorf("Read = %+v %v %v, want fresh %q", got, ok, err, id)
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
		if got, ok, err := read(m, value); ok || err != nil {
			t.Errorf("%s: read as %+v %v %v, want no session", name, got, ok, err)
		}
	}
}

// A cookie this manager signed, with its id changed and its signature
// kept: the signature must cover the id, or a browser could present any
// session id it likes (someone else's) with its own valid signature.
func TestAValidlySignedCookieWithAnotherIDIsRefused(t *testing.T) {
	m := newManager(t, strings.Repeat("s", 32))
	id, value := issue(m)
	rest := strings.TrimPrefix(value, id) // .issued.sig
	other, _ := issue(m)
	changed := "A" + id[1:] // one character changed, still 22 of base64url
	if id[0] == 'A' {
		changed = "B" + id[1:]
	}
	for name, value := range map[string]string{
		"another session's id":  other + rest,
		"one character changed": changed + rest,
		"a made-up id":          strings.Repeat("A", len(id)) + rest,
	} {
		if got, ok, err := read(m, value); ok || err != nil {
			t.Errorf("%s with a valid signature of %s: read as %+v %v %v, want no session", name, id, got, ok, err)
		}
	}
	// The untouched cookie still reads back: the refusals are the ids'.
	if got, ok, err := read(m, value); !ok || err != nil || got.ID != id {
		t.Errorf("the issued cookie: Read = %+v %v %v, want %q", got, ok, err, id)
	}
}

func TestAShortSecretIsRefused(t *testing.T) {
	long := []byte(strings.Repeat("k", 32))
	for name, keys := range map[string][][]byte{
		"a 5-byte key":                  {[]byte("short")},
		"a 5-byte old key after a good": {long, []byte("short")},
		"no key":                        nil,
	} {
		if _, err := session.New(keys, false, time.Hour); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
}

// A cookie with its issue time moved on and its signature kept: the
// signature must cover the time, or a browser could extend its session.
func TestAValidlySignedCookieWithAnotherIssueTimeIsRefused(t *testing.T) {
	clk := newClock()
	m := newManagerAt(t, clk, strings.Repeat("s", 32))
	id, value := issue(m)
	parts := strings.Split(value, ".")
	later := id + "." + strconv.FormatInt(clk.now.Add(time.Hour).Unix(), 10) + "." + parts[2]
	clk.Add(time.Hour) // the issued cookie has expired; the moved one would be new
	if got, ok, err := read(m, later); ok || err != nil {
		t.Errorf("a moved issue time: read as %+v %v %v, want no session", got, ok, err)
	}
}

func TestACookieExpiresOneLifetimeAfterItWasIssued(t *testing.T) {
	clk := newClock()
	m := newManagerAt(t, clk, strings.Repeat("s", 32))
	id, value := issue(m)
	clk.Add(time.Hour - time.Second)
	if got, ok, err := read(m, value); !ok || err != nil || got.ID != id {
		t.Errorf("a second before the end: Read = %+v %v %v, want %q", got, ok, err, id)
	}
	clk.Add(time.Second)
	if got, ok, err := read(m, value); ok || !errors.Is(err, session.ErrExpired) {
		t.Errorf("at the end of its lifetime: Read = %+v %v %v, want ErrExpired", got, ok, err)
	}
}

// A cookie of the format without an issue time, signed by a listed key:
// authentic, but it cannot say when it was issued, so it has expired.
func TestACookieWithoutAnIssueTimeHasExpired(t *testing.T) {
	key := strings.Repeat("s", 32)
	m := newManagerAt(t, newClock(), key)
	id, _ := issue(m)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(id))
	untimed := id + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	if got, ok, err := read(m, untimed); ok || !errors.Is(err, session.ErrExpired) {
		t.Errorf("Read = %+v %v %v, want ErrExpired", got, ok, err)
	}
}

func TestACookieInUseIsStaleAfterAQuarterOfItsLifetimeAndRefreshKeepsItsID(t *testing.T) {
	clk := newClock()
	m := newManagerAt(t, clk, strings.Repeat("s", 32))
	id, value := issue(m)
	clk.Add(15*time.Minute - time.Second)
	if got, _, _ := read(m, value); got.Stale {
		t.Errorf("before a quarter of its lifetime: stale")
	}
	clk.Add(time.Second)
	if got, ok, _ := read(m, value); !ok || !got.Stale {
		t.Fatalf("after a quarter of its lifetime: Read = %+v %v, want stale", got, ok)
	}
	rec := httptest.NewRecorder()
	m.Refresh(rec, id)
	refreshed := rec.Result().Cookies()[0].Value
	clk.Add(time.Hour - time.Second) // the first cookie has expired, the refreshed one has not
	if got, ok, err := read(m, refreshed); !ok || err != nil || got.ID != id || got.Stale != true {
		t.Errorf("the refreshed cookie: Read = %+v %v %v, want %q (stale by now)", got, ok, err, id)
	}
	if _, _, err := read(m, value); !errors.Is(err, session.ErrExpired) {
		t.Errorf("the first cookie: err %v, want ErrExpired", err)
	}
}

// Rotation: the new key is listed first, the old one after it; then the
// old one is removed.
func TestKeysRotateWithoutEndingSessions(t *testing.T) {
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 32)
	clk := newClock()
	before := newManagerAt(t, clk, oldKey)
	during := newManagerAt(t, clk, newKey, oldKey)
	after := newManagerAt(t, clk, newKey)
	id, old := issue(before)

	got, ok, err := read(during, old)
	if !ok || err != nil || got.ID != id || !got.Stale {
		t.Fatalf("signed by a listed old key: Read = %+v %v %v, want %q, stale to re-sign it", got, ok, err, id)
	}
	rec := httptest.NewRecorder()
	during.Refresh(rec, id)
	resigned := rec.Result().Cookies()[0].Value
	if got, ok, err := read(after, resigned); !ok || err != nil || got.ID != id || got.Stale {
		t.Errorf("re-signed with the first key: Read after the old key went = %+v %v %v, want fresh %q", got, ok, err, id)
	}
	if got, ok, err := read(after, old); ok || err != nil {
		t.Errorf("signed by a retired key: Read = %+v %v %v, want no session", got, ok, err)
	}
}

func TestSessionSecretListsKeysSigningKeyFirst(t *testing.T) {
	got := session.ParseKeys(" first , second,,third ")
	want := []string{"first", "second", "third"}
	if len(got) != len(want) {
		t.Fatalf("ParseKeys = %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("key %d = %q, want %q", i, got[i], want[i])
		}
	}
}
