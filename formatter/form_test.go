package formatter_test

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/webhookd/webhookd/formatter"
)

// formPair is one name=value of a form body, its name split into the base and bracket keys.
type formPair struct {
	name  []string
	value string
}

func (p formPair) equal(q formPair) bool { return slices.Equal(p.name, q.name) && p.value == q.value }

func (p formPair) String() string { return fmt.Sprintf("%q=%q", p.name, p.value) }

// parseForm reads a body in bracket notation the strict way: it splits names at the literal
// brackets before decoding, so a bracket inside a key (sent as %5B or %5D) stays in the key,
// which parse_str cannot manage. Everything renderForm writes is meant to survive it.
func parseForm(body string) ([]formPair, error) {
	for i := 0; i < len(body); i++ {
		if c := body[i]; !strings.ContainsRune("*-._+%&=[]", rune(c)) &&
			!('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return nil, fmt.Errorf("byte %q at %d should have been escaped", c, i)
		}
	}
	var pairs []formPair
	for field := range strings.SplitSeq(body, "&") {
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("%q has no =", field)
		}
		parts, rest := []string{name}, ""
		if i := strings.IndexByte(name, '['); i >= 0 {
			parts, rest = []string{name[:i]}, name[i:]
		}
		for rest != "" {
			end := strings.IndexByte(rest, ']')
			if rest[0] != '[' || end < 0 || strings.Contains(rest[1:end], "[") {
				return nil, fmt.Errorf("name %q is not in bracket notation", name)
			}
			parts, rest = append(parts, rest[1:end]), rest[end+1:]
		}
		var p formPair
		var err error
		for _, s := range parts {
			d, err := url.QueryUnescape(s)
			if err != nil {
				return nil, fmt.Errorf("name %q: %v", name, err)
			}
			p.name = append(p.name, d)
		}
		if p.value, err = url.QueryUnescape(value); err != nil {
			return nil, fmt.Errorf("value %q: %v", value, err)
		}
		pairs = append(pairs, p)
	}
	return pairs, nil
}

// formPairs lists the pairs a form body must hold for the JSON body v: one per field, one per
// leaf of data, with an empty value for null and for an empty container.
func formPairs(v jsonValue) []formPair {
	var pairs []formPair
	var walk func(name []string, v jsonValue)
	walk = func(name []string, v jsonValue) {
		if len(v.vals) == 0 {
			pairs = append(pairs, formPair{name: name, value: v.text})
			return
		}
		for i, x := range v.vals {
			key := strconv.Itoa(i)
			if v.kind == 'o' {
				key = v.keys[i]
			}
			walk(append(slices.Clip(name), key), x)
		}
	}
	for i, key := range v.keys {
		walk([]string{key}, v.vals[i])
	}
	return pairs
}

func TestFormPairs(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{data: `{"title":"Fix","tags":["a","b"],"owner":{"id":7}}`,
			want: `&data[title]=Fix&data[tags][0]=a&data[tags][1]=b&data[owner][id]=7`},
		{data: `null`, want: `&data=`},
		{data: `{"n":null,"o":{},"a":[],"s":""}`, want: `&data[n]=&data[o]=&data[a]=&data[s]=`},
		{data: `[true,false,-0,1.0e+400]`,
			want: `&data[0]=true&data[1]=false&data[2]=-0&data[3]=1.0e%2B400`},
		{data: `"a b&c=d"`, want: `&data=a+b%26c%3Dd`},
		{data: `{"a]b[c":{"x y":"é"}}`, want: `&data[a%5Db%5Bc][x+y]=%C3%A9`},
	}
	for _, tt := range tests {
		got, err := formatter.Render(formatter.Form, event(tt.data))
		if err != nil {
			t.Errorf("Render(%s): %v", tt.data, err)
			continue
		}
		_, gotData, _ := strings.Cut(string(got), "&occurredAt=2024-05-01T12%3A30%3A00Z")
		if gotData != tt.want {
			t.Errorf("Render(%s):\ngot  %s\nwant %s", tt.data, gotData, tt.want)
		}
	}
}
