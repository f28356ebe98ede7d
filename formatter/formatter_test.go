package formatter_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webhookd/webhookd/formatter"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden from the current output")

var formats = []formatter.Format{formatter.JSON, formatter.XML, formatter.Form}

func goldenPath(name string, f formatter.Format) string {
	return filepath.Join("testdata", "golden", name+"."+string(f))
}

// TestGolden pins every byte of every corpus body: a receiver's signature check depends on
// them, so any change must be one somebody meant and reviewed in the diff of testdata/golden.
func TestGolden(t *testing.T) {
	for _, c := range corpus {
		for _, f := range formats {
			t.Run(c.name+"/"+string(f), func(t *testing.T) {
				got, err := formatter.Render(f, c.event)
				if err != nil {
					t.Fatalf("Render: %v", err)
				}
				path := goldenPath(c.name, f)
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("read golden file (run go test -update to create it): %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("Render(%s, %s):\ngot  %q\nwant %q", f, c.name, got, want)
				}
			})
		}
	}
}

// TestDeterministic renders each body twice: a retry must carry the bytes that were signed.
func TestDeterministic(t *testing.T) {
	for _, c := range corpus {
		for _, f := range formats {
			a, errA := formatter.Render(f, c.event)
			b, errB := formatter.Render(f, c.event)
			if !bytes.Equal(a, b) || errA != nil || errB != nil {
				t.Errorf("%s/%s: got %q (%v), then %q (%v)", c.name, f, a, errA, b, errB)
			}
		}
	}
}

// TestRenderErrors checks that every format refuses the same broken events, so a delivery never
// succeeds in one format and fails in another.
func TestRenderErrors(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	tests := []struct {
		name     string
		data     string
		objectID string
		want     string // in the error message
	}{
		{name: "truncated object", data: `{"a":1`, want: "unexpected end of JSON input"},
		{name: "bare word", data: `nope`, want: "invalid character"},
		{name: "two values", data: `1 2`, want: "after top-level value"},
		{name: "trailing garbage", data: `{} x`, want: "invalid character"},
		{name: "raw control character", data: "\"a\x01\"", want: "invalid character"},
		{name: "leading zero", data: `01`, want: "invalid character"},
		{name: "only whitespace", data: "  ", want: "unexpected end of JSON input"},
		{name: "too deep", data: deep, want: "exceeded max depth"},
		{name: "objectId object", data: `1`, objectID: `{"id":1}`, want: "objectId is neither"},
		{name: "objectId bool", data: `1`, objectID: `true`, want: "objectId is neither"},
		{name: "objectId broken string", data: `1`, objectID: `"abc`, want: "objectId is neither"},
	}
	for _, tt := range tests {
		for _, f := range formats {
			t.Run(tt.name+"/"+string(f), func(t *testing.T) {
				e := event(tt.data)
				e.ObjectID = json.RawMessage(tt.objectID)
				got, err := formatter.Render(f, e)
				if err == nil {
					t.Fatalf("got %.200q, want an error", got)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("got error %q, want one containing %q", err, tt.want)
				}
			})
		}
	}
}

func TestDepthLimitMatchesJSON(t *testing.T) {
	const depth = 10000 // encoding/json's limit: this deep is still fine
	e := event(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	for _, f := range formats {
		if _, err := formatter.Render(f, e); err != nil {
			t.Errorf("Render(%s) of %d nested arrays: got %v, want no error", f, depth, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in          string
		want        formatter.Format
		contentType string
		wantErr     bool
	}{
		{in: "json", want: formatter.JSON, contentType: "application/json"},
		{in: "xml", want: formatter.XML, contentType: "application/xml"},
		{in: "form", want: formatter.Form, contentType: "application/x-www-form-urlencoded"},
		{in: "JSON", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := formatter.ParseFormat(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseFormat(%q): got %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.ContentType() != tt.contentType {
			t.Errorf("%s.ContentType(): got %q, want %q", got, got.ContentType(), tt.contentType)
		}
	}
	if _, err := formatter.Render("yaml", event(`1`)); err == nil {
		t.Error(`Render("yaml"): got no error, want one`)
	}
}

// jsonValue is a JSON value decoded with its object keys in order, which the tests compare
// rendered bodies against; a Go map would lose exactly the order under test.
type jsonValue struct {
	kind byte   // 'n' null, 's' string, 'd' number, 'b' boolean, 'o' object, 'a' array
	text string // the string, the number as written, or true/false
	keys []string
	vals []jsonValue
}

func decodeOrdered(b []byte) (jsonValue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return v, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, errors.New("more than one JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (jsonValue, error) {
	tok, err := dec.Token()
	if err != nil {
		return jsonValue{}, err
	}
	switch v := tok.(type) {
	case nil:
		return jsonValue{kind: 'n'}, nil
	case string:
		return jsonValue{kind: 's', text: v}, nil
	case json.Number:
		return jsonValue{kind: 'd', text: v.String()}, nil
	case bool:
		return jsonValue{kind: 'b', text: fmt.Sprint(v)}, nil
	}
	out := jsonValue{kind: 'a'}
	if tok == json.Delim('{') {
		out.kind = 'o'
	}
	for dec.More() {
		if out.kind == 'o' {
			key, err := dec.Token()
			if err != nil {
				return out, err
			}
			out.keys = append(out.keys, key.(string))
		}
		v, err := decodeValue(dec)
		if err != nil {
			return out, err
		}
		out.vals = append(out.vals, v)
	}
	_, err = dec.Token()
	return out, err
}

// field returns the member key of an object value, or fails the test.
func (v jsonValue) field(t testing.TB, key string) (jsonValue, bool) {
	t.Helper()
	if v.kind != 'o' {
		t.Fatalf("got a %c value, want an object", v.kind)
	}
	for i, k := range v.keys {
		if k == key {
			return v.vals[i], true
		}
	}
	return jsonValue{}, false
}

// decodeJSONBody reads a JSON body, whose fields the other formats must carry too.
func decodeJSONBody(t testing.TB, e formatter.Event) jsonValue {
	t.Helper()
	body, err := formatter.Render(formatter.JSON, e)
	if err != nil {
		t.Fatalf("Render(json): %v", err)
	}
	v, err := decodeOrdered(body)
	if err != nil {
		t.Fatalf("decode JSON body %q: %v", body, err)
	}
	return v
}
