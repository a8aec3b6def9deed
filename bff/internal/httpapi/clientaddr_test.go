package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// proxies is the trusted proxies of these tests: a compose-like network
// and one IPv6 proxy.
var proxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::1/128")}

func requestFrom(peer string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = peer
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestTheClientAddressIsThePeerOrWhatTheTrustedProxiesSay(t *testing.T) {
	tests := []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"a direct client", "192.0.2.1:5000", nil, "192.0.2.1"},
		{"a direct client's X-Forwarded-For, ignored", "192.0.2.1:5000", []string{"203.0.113.7"}, "192.0.2.1"},
		{"a trusted proxy's client", "10.0.0.1:5000", []string{"203.0.113.7"}, "203.0.113.7"},
		{"a spoofed leftmost entry, skipped", "10.0.0.1:5000", []string{"198.51.100.1, 203.0.113.7"}, "203.0.113.7"},
		{"a spoofed trusted leftmost entry, skipped", "10.0.0.1:5000", []string{"10.9.9.9,203.0.113.7"}, "203.0.113.7"},
		{"a chain of trusted proxies", "10.0.0.1:5000", []string{"198.51.100.1, 203.0.113.7, 10.0.0.2"}, "203.0.113.7"},
		{"the chain over two header lines", "10.0.0.1:5000", []string{"198.51.100.1, 203.0.113.7", "10.0.0.2"}, "203.0.113.7"},
		{"a spoofed header line before the proxy's", "10.0.0.1:5000", []string{"198.51.100.1", "203.0.113.7"}, "203.0.113.7"},
		{"only trusted hops: the leftmost", "10.0.0.1:5000", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"a trusted proxy with no header", "10.0.0.1:5000", nil, "10.0.0.1"},
		{"an empty header", "10.0.0.1:5000", []string{""}, "10.0.0.1"},
		{"garbage where the proxy wrote: the proxy", "10.0.0.1:5000", []string{"203.0.113.7, unknown"}, "10.0.0.1"},
		{"an entry with a port", "10.0.0.1:5000", []string{"203.0.113.7:4711"}, "203.0.113.7"},
		{"an IPv6 client, by its /64", "10.0.0.1:5000", []string{"2001:db8:1:2:aaaa:bbbb:cccc:dddd"}, "2001:db8:1:2::/64"},
		{"an IPv6 entry with a port", "10.0.0.1:5000", []string{"[2001:db8:1:2::9]:443"}, "2001:db8:1:2::/64"},
		{"an IPv6 peer, by its /64", "[2001:db8:1:2::1]:5000", nil, "2001:db8:1:2::/64"},
		{"an IPv6 trusted proxy", "[2001:db8:ffff::1]:5000", []string{"192.0.2.9"}, "192.0.2.9"},
		{"an IPv4-mapped peer is its IPv4 address", "[::ffff:192.0.2.1]:5000", nil, "192.0.2.1"},
		{"an IPv4-mapped trusted proxy", "[::ffff:10.0.0.1]:5000", []string{"::ffff:203.0.113.7"}, "203.0.113.7"},
		{"a peer that is no address, as it is", "@", []string{"203.0.113.7"}, "@"},
	}
	for _, tt := range tests {
		if got := clientAddress(requestFrom(tt.peer, tt.xff...), proxies); got != tt.want {
			t.Errorf("%s: from %s with X-Forwarded-For %q: client %q, want %q", tt.name, tt.peer, tt.xff, got, tt.want)
		}
	}
}

// FuzzClientAddress: whatever a client writes in X-Forwarded-For, (1) a
// request not from a trusted proxy is keyed on its peer; (2) once a
// trusted proxy appends the address it saw, that address is the client;
// (3) the client is the peer or one of the header's entries, never made up.
func FuzzClientAddress(f *testing.F) {
	for _, seed := range []string{"", "203.0.113.7", "1.2.3.4, 10.0.0.2", "[::1]:80,unknown", ",,", "10.0.0.1, 2001:db8::1", " 10.0.0.3 , ::ffff:10.0.0.4"} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, xff string, fromProxy bool) {
		peer := "192.0.2.1:5000"
		if fromProxy {
			peer = "10.0.0.1:5000"
		}
		got := clientAddress(requestFrom(peer, xff), proxies)
		if !fromProxy && got != "192.0.2.1" {
			t.Fatalf("X-Forwarded-For %q from an untrusted peer made the client %q", xff, got)
		}
		if appended := clientAddress(requestFrom("10.0.0.1:5000", xff+", 198.51.100.9"), proxies); appended != "198.51.100.9" {
			t.Fatalf("X-Forwarded-For %q before the proxy's entry made the client %q", xff, appended)
		}
		if twoLines := clientAddress(requestFrom("10.0.0.1:5000", xff, "198.51.100.9"), proxies); twoLines != "198.51.100.9" {
			t.Fatalf("an X-Forwarded-For line %q before the proxy's made the client %q", xff, twoLines)
		}
		if p, _ := parseHop(peer); got == clientKey(p) {
			return
		}
		for _, e := range strings.Split(xff, ",") {
			if a, ok := parseHop(strings.TrimSpace(e)); ok && clientKey(a) == got {
				return
			}
		}
		t.Fatalf("X-Forwarded-For %q from %s: client %q is neither the peer nor an entry", xff, peer, got)
	})
}
