package sender

import (
	"net/netip"
)

// Allowed reports whether the destination guard lets the worker connect to ip: only globally
// routable unicast addresses pass. Refused are loopback, private (RFC 1918), carrier-grade NAT
// (100.64/10), link-local (169.254/16, where cloud metadata lives, and fe80::/10), unique-local
// (fc00::/7), multicast, unspecified, broadcast, and documentation, benchmarking and reserved
// ranges. An IPv4-mapped IPv6 address is judged as the IPv4 address it maps to, and NAT64, 6to4
// and Teredo addresses by the IPv4 addresses they embed, because a gateway on the way would
// deliver them there. The zone of a scoped address is ignored.
func Allowed(ip netip.Addr) bool {
	return classify(ip) == ""
}

// refusedError is a refused destination. Its message names the address and why, for the
// delivery's last_error: "destination 127.0.0.1 is a loopback address".
type refusedError struct {
	addr netip.Addr
	why  string
}

func (e *refusedError) Error() string { return "destination " + e.addr.String() + " is " + e.why }

// Unwrap makes errors.Is(err, ErrDestinationRefused) hold.
func (e *refusedError) Unwrap() error { return ErrDestinationRefused }

// checkDestination is the guard the Sender runs on every dialled address.
func checkDestination(ap netip.AddrPort) error {
	if why := classify(ap.Addr()); why != "" {
		return &refusedError{addr: ap.Addr(), why: why}
	}
	return nil
}

// rangeRule is a refused range and the phrase that completes "destination X is ...".
type rangeRule struct {
	prefix netip.Prefix
	why    string
}

// Ranges beyond what netip's Is* methods cover. Each is either not routable on the internet or
// routable only to places the worker must not reach.
var (
	reservedV4 = []rangeRule{
		{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address`},
		{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
		{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment address"},
		{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
		{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
		{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
		{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
		{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	}
	reservedV6 = []rangeRule{
		{netip.MustParsePrefix("fc00::/7"), "a unique-local address"},
		{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
		{netip.MustParsePrefix("2001:2::/48"), "a benchmarking address"},
		{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
		{netip.MustParsePrefix("3fff::/20"), "a documentation address"},
	}
	broadcastV4   = netip.MustParseAddr("255.255.255.255")
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour     = netip.MustParsePrefix("2002::/16")
	teredo        = netip.MustParsePrefix("2001::/32")
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

// classify returns why ip is refused, as the phrase completing "destination X is ...", or ""
// when it is allowed.
func classify(ip netip.Addr) string {
	ip = ip.WithZone("")
	switch {
	case !ip.IsValid():
		return "an invalid address"
	case ip.Is4In6():
		// The kernel dials ::ffff:a.b.c.d as a.b.c.d over IPv4.
		return embedded("an IPv4-mapped form of", ip.Unmap())
	case ip.Is4():
		return classify4(ip)
	}
	return classify6(ip)
}

func classify4(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified():
		// Connecting to 0.0.0.0 reaches the local host on Linux.
		return "an unspecified address"
	case ip == broadcastV4:
		return "the broadcast address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsMulticast():
		return "a multicast address"
	}
	return inRanges(reservedV4, ip)
}

func classify6(ip netip.Addr) string {
	b := ip.As16()
	switch {
	case ip.IsUnspecified():
		return "an unspecified address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsMulticast():
		return "a multicast address"
	case nat64.Contains(ip):
		// The well-known NAT64 prefix is global, but a NAT64 gateway (cloud NAT gateways are
		// ones) translates it to the IPv4 address in the last 32 bits, private ones included.
		return embedded("a NAT64 address for", v4(b[12:16]))
	case sixToFour.Contains(ip):
		return embedded("a 6to4 address for", v4(b[2:6]))
	case teredo.Contains(ip):
		// Teredo carries the server in bits 32-63 and the client, inverted, in the last 32 bits.
		if why := embedded("a Teredo address for", v4(b[4:8])); why != "" {
			return why
		}
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return embedded("a Teredo address for", v4(client[:]))
	}
	if why := inRanges(reservedV6, ip); why != "" {
		return why
	}
	if !globalUnicast.Contains(ip) {
		// Outside 2000::/3 nothing is assigned as global unicast: IPv4-compatible ::/96,
		// discard-only 100::/64 and the rest are not destinations on the internet.
		return "a reserved address"
	}
	return ""
}

// embedded judges the IPv4 address carried inside an IPv6 one, describing both.
func embedded(form string, ip netip.Addr) string {
	if why := classify4(ip); why != "" {
		return form + " " + ip.String() + ", " + why
	}
	return ""
}

func inRanges(rules []rangeRule, ip netip.Addr) string {
	for _, r := range rules {
		if r.prefix.Contains(ip) {
			return r.why
		}
	}
	return ""
}

func v4(b []byte) netip.Addr {
	return netip.AddrFrom4([4]byte(b))
}
