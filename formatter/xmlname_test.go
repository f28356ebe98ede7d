package formatter

import (
	"encoding/xml"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestIsElementName(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"title", true}, {"_id", true}, {"a.b-c_1", true}, {"Zoë", true}, {"名前", true},
		{"field", true}, {"item", true}, {"x-ml", true}, {"a\u0300", true},
		{"", false}, {"1st", false}, {"-x", false}, {".x", false}, {"a b", false},
		{"a:b", false}, {":a", false}, {"xml", false}, {"XmlFoo", false}, {"xMLns", false},
		{"a<b", false}, {"😀", false}, {"\u0300a", false}, {"\u3400", false}, {"a\xff", false},
		{"\uFFFD", false},
	}
	for _, tt := range tests {
		if got := isElementName(tt.key); got != tt.want {
			t.Errorf("isElementName(%q): got %v, want %v", tt.key, got, tt.want)
		}
	}
}

// goAccepts reports whether encoding/xml reads name as an element name without a prefix.
func goAccepts(name string) bool {
	dec := xml.NewDecoder(strings.NewReader("<" + name + "/>"))
	dec.Strict = true
	tok, err := dec.Token()
	start, ok := tok.(xml.StartElement)
	return err == nil && ok && start.Name.Local == name && start.Name.Space == ""
}

// fifthEdition reports whether r is a NameStartChar (start) or a NameChar of XML 1.0 5th
// edition, the rule of libxml2.
func fifthEdition(r rune, start bool) bool {
	in := func(lo, hi rune) bool { return lo <= r && r <= hi }
	if r == ':' || in('A', 'Z') || r == '_' || in('a', 'z') || in(0xC0, 0xD6) || in(0xD8, 0xF6) ||
		in(0xF8, 0x2FF) || in(0x370, 0x37D) || in(0x37F, 0x1FFF) || in(0x200C, 0x200D) ||
		in(0x2070, 0x218F) || in(0x2C00, 0x2FEF) || in(0x3001, 0xD7FF) || in(0xF900, 0xFDCF) ||
		in(0xFDF0, 0xFFFD) || in(0x10000, 0xEFFFF) {
		return true
	}
	return !start && (r == '-' || r == '.' || in('0', '9') || r == 0xB7 || in(0x300, 0x36F) || in(0x203F, 0x2040))
}

// TestElementNameTables checks the copied 4th-edition tables rune by rune against encoding/xml,
// and that every name they allow is also a 5th-edition name, so that both kinds of parser
// read our element names.
func TestElementNameTables(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 2×1.1M runes")
	}
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) || r == '>' || r == '/' {
			continue // not a character, or one that would end the tag and prove nothing
		}
		s := string(r)
		start, rest := isElementName(s), isElementName("a"+s)
		if r == ':' {
			continue // allowed by both editions; ours to refuse, for namespaces
		}
		if got := goAccepts(s); start != got {
			t.Errorf("%U as first character: isElementName says %v, encoding/xml %v", r, start, got)
		}
		if got := goAccepts("a" + s); rest != got {
			t.Errorf("%U as later character: isElementName says %v, encoding/xml %v", r, rest, got)
		}
		if start && !fifthEdition(r, true) || rest && !fifthEdition(r, false) {
			t.Errorf("%U: allowed, but not by XML 1.0 5th edition", r)
		}
	}
}
