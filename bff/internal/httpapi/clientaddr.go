package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// The client a request's per-address limits are keyed on.
//
// It is the TCP peer, unless the peer is a trusted proxy: then
// X-Forwarded-For is read from the right, each trusted proxy's entry
// skipped, and the first entry not trusted is the client. A client can
// write anything to the left of what the proxies append, so only the
// entries the trusted proxies added are believed: a spoofed leftmost
// entry is never reached while a proxy appended the real peer after it.
// A header from an untrusted peer is ignored altogether.
//
// An IPv6 client is its /64: one subscriber, one host with privacy
// addresses, gets a whole /64 and can take a fresh address in it for
// every request, so a per-address limit on /128s is no limit.

// ipv6ClientBits is the prefix an IPv6 client is counted by.
const ipv6ClientBits = 64

// clientAddress is the key of the client that sent r: an IPv4 address or
// an IPv6 /64 prefix, as text. A peer that is not an IP address (a unix
// socket, a test's made-up RemoteAddr) is keyed on RemoteAddr as it is.
func clientAddress(r *http.Request, trusted []netip.Prefix) string {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	return clientKey(forwardedClient(peer, r.Header.Values("X-Forwarded-For"), trusted))
}

// forwardedClient walks the X-Forwarded-For values (each a comma-separated
// list, in header order) from the right while the hop it is at is
// trusted, and returns the first hop that is not, or the last it could
// read: when every hop is trusted (a proxy's own request), the leftmost;
// at an entry that is not an address, the trusted hop that passed it on.
func forwardedClient(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		rest := xff[i]
		for isTrusted(client, trusted) {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, entry = rest[:j], rest[j+1:]
			} else if rest != "" {
				rest, entry = "", rest
			} else {
				break // this header value is used up: on to the one before
			}
			hop, ok := parseHop(strings.TrimSpace(entry))
			if !ok {
				return client
			}
			client = hop
		}
		if !isTrusted(client, trusted) {
			return client
		}
	}
	return client
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads an address as peers and proxies write it: bare
// ("192.0.2.1", "2001:db8::1"), with a port ("192.0.2.1:80",
// "[2001:db8::1]:80") or in brackets; an IPv4-mapped IPv6 address is its
// IPv4 address, so one client is one key however it is written. A zone
// (fe80::1%eth0) is dropped for the same reason.
func parseHop(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(s)
		if splitErr != nil {
			host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, false
		}
	}
	return a.Unmap().WithZone(""), true
}

// clientKey is a's key: itself for IPv4, its /64 for IPv6.
func clientKey(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, ipv6ClientBits).Masked().String()
}
