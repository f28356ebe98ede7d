package sender

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip   string
		want bool
	}{
		// Public addresses pass.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.215.14", true},
		{"9.255.255.255", true},   // just below 10/8
		{"11.0.0.0", true},        // just above 10/8
		{"172.15.255.255", true},  // just below 172.16/12
		{"172.32.0.0", true},      // just above 172.16/12
		{"192.167.255.255", true}, // just below 192.168/16
		{"192.169.0.0", true},     // just above 192.168/16
		{"100.63.255.255", true},  // just below 100.64/10
		{"100.128.0.0", true},     // just above 100.64/10
		{"126.255.255.255", true}, // just below 127/8
		{"128.0.0.0", true},       // just above 127/8
		{"169.253.255.255", true}, // just below 169.254/16
		{"169.255.0.0", true},     // just above 169.254/16
		{"223.255.255.255", true}, // just below multicast
		{"2606:4700::1111", true},
		{"2001:4860:4860::8888", true},
		{"2a00:1450:4001:80b::200e", true},
		{"::ffff:8.8.8.8", true},            // mapped public
		{"64:ff9b::808:808", true},          // NAT64 for 8.8.8.8
		{"2002:808:808::1", true},           // 6to4 for 8.8.8.8
		{"2001:0:808:808::f7f7:f7f7", true}, // Teredo: server 8.8.8.8, client 8.8.8.8

		// IPv4 loopback, private, shared and link-local.
		{"127.0.0.1", false},
		{"127.255.255.255", false},
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"172.16.0.0", false},
		{"172.31.255.255", false},
		{"192.168.0.1", false},
		{"100.64.0.0", false},
		{"100.127.255.255", false},
		{"100.100.100.200", false}, // Alibaba Cloud metadata
		{"169.254.0.0", false},
		{"169.254.169.254", false}, // cloud metadata
		{"169.254.255.255", false},

		// IPv4 special-purpose.
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"192.0.0.170", false},
		{"192.0.2.1", false},
		{"198.51.100.7", false},
		{"203.0.113.9", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},

		// IPv6.
		{"::", false},
		{"::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"febf:ffff::1", false}, // top of fe80::/10
		{"fec0::1", false},
		{"fc00::1", false},
		{"fd00::2", false},
		{"fd00:ec2::254", false}, // AWS metadata over IPv6
		{"ff02::1", false},
		{"ff0e::1", false},
		{"100::1", false},           // discard-only
		{"::7f00:1", false},         // IPv4-compatible 127.0.0.1
		{"::808:808", false},        // IPv4-compatible, deprecated whatever it embeds
		{"2001:db8::1", false},      // documentation
		{"3fff::1", false},          // documentation
		{"2001:2::1", false},        // benchmarking
		{"64:ff9b:1::a00:1", false}, // local-use NAT64

		// IPv6 forms that carry a refused IPv4 address.
		{"::ffff:127.0.0.1", false},
		{"::ffff:7f00:1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},
		{"64:ff9b::7f00:1", false},           // NAT64 for 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false},        // NAT64 for 169.254.169.254
		{"64:ff9b::c0a8:101", false},         // NAT64 for 192.168.1.1
		{"2002:7f00:1::1", false},            // 6to4 for 127.0.0.1
		{"2002:a00:1::", false},              // 6to4 for 10.0.0.1
		{"2001:0:7f00:1::", false},           // Teredo server 127.0.0.1
		{"2001:0:808:808::f5ff:fffe", false}, // Teredo client 10.0.0.1, inverted
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		if got := Allowed(ip); got != tt.want {
			t.Errorf("Allowed(%s) = %v, want %v (reason %q)", tt.ip, got, tt.want, classify(ip))
		}
	}
	if Allowed(netip.Addr{}) {
		t.Error("Allowed(zero Addr) = true, want false")
	}
}

func TestRefusalMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.1:80", "destination 127.0.0.1 is a loopback address"},
		{"10.1.2.3:443", "destination 10.1.2.3 is a private address"},
		{"169.254.169.254:80", "destination 169.254.169.254 is a link-local address"},
		{"100.64.1.1:80", "destination 100.64.1.1 is a carrier-grade NAT address"},
		{"0.0.0.0:80", "destination 0.0.0.0 is an unspecified address"},
		{"255.255.255.255:80", "destination 255.255.255.255 is the broadcast address"},
		{"[::1]:80", "destination ::1 is a loopback address"},
		{"[fd00::2]:80", "destination fd00::2 is a unique-local address"},
		{"[::ffff:127.0.0.1]:80", "destination ::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address"},
		{"[64:ff9b::a9fe:a9fe]:80", "destination 64:ff9b::a9fe:a9fe is a NAT64 address for 169.254.169.254, a link-local address"},
	}
	for _, tt := range tests {
		err := checkDestination(netip.MustParseAddrPort(tt.addr))
		if err == nil {
			t.Errorf("checkDestination(%s) = nil, want %q", tt.addr, tt.want)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("checkDestination(%s) = %q, want %q", tt.addr, got, tt.want)
		}
		if !errors.Is(err, ErrDestinationRefused) {
			t.Errorf("checkDestination(%s) does not wrap ErrDestinationRefused", tt.addr)
		}
	}
	if err := checkDestination(netip.MustParseAddrPort("8.8.8.8:443")); err != nil {
		t.Errorf("checkDestination(8.8.8.8:443) = %v, want nil", err)
	}
}

// FuzzAllowed checks that the IPv6 forms which carry an IPv4 address are judged as that
// address, and that no input panics.
func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "8.8.8.8", "10.0.0.1", "169.254.169.254", "0.0.0.0", "1.1.1.1"} {
		a := netip.MustParseAddr(s).As4()
		f.Add(a[0], a[1], a[2], a[3])
	}
	f.Fuzz(func(t *testing.T, a, b, c, d byte) {
		v4 := netip.AddrFrom4([4]byte{a, b, c, d})
		want := Allowed(v4)
		forms := map[string][16]byte{
			"mapped": {10: 0xff, 11: 0xff, 12: a, 13: b, 14: c, 15: d},
			"NAT64":  {0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: a, 13: b, 14: c, 15: d},
			"6to4":   {0: 0x20, 1: 0x02, 2: a, 3: b, 4: c, 5: d, 8: 1},
		}
		for name, b16 := range forms {
			ip := netip.AddrFrom16(b16)
			if got := Allowed(ip); got != want {
				t.Errorf("Allowed(%s %s) = %v, but Allowed(%s) = %v", name, ip, got, v4, want)
			}
		}
	})
}
