package formatter_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/webhookd/webhookd/formatter"
)

// The fuzz targets take an event apart into fields the fuzzer can mutate one by one, and each
// checks its format against the JSON body, the reference every format must agree with.

func addSeeds(f *testing.F) {
	for _, c := range corpus {
		e := c.event
		var project uint64
		if e.ProjectID != nil {
			project = *e.ProjectID
		}
		f.Add(e.Name, e.ID, e.AccountID, project, e.ProjectID != nil, []byte(e.ObjectID), e.OccurredAt, []byte(e.Data))
	}
	// Broken events, for the formats to agree on refusing them.
	for _, data := range []string{`{"a":`, `[1,]`, `1 2`, `{"a" 1}`, "\"\x01\"", `nul`, `{1:2}`} {
		f.Add("A.B", "1", uint64(1), uint64(0), false, []byte(nil), "", []byte(data))
	}
	f.Add("A.B", "1", uint64(1), uint64(0), false, []byte(`[1]`), "", []byte(`1`))
}

func fuzzEvent(name, id string, account, project uint64, hasProject bool, objectID []byte,
	occurredAt string, data []byte) formatter.Event {
	e := formatter.Event{Name: name, ID: id, AccountID: account, ObjectID: objectID,
		OccurredAt: occurredAt, Data: data}
	if hasProject {
		e.ProjectID = &project
	}
	return e
}

// renderAgreeing renders e in format f, after checking that every format either renders e or
// refuses it: an event that can be delivered to one webhook can be delivered to all.
func renderAgreeing(t *testing.T, f formatter.Format, e formatter.Event) ([]byte, bool) {
	t.Helper()
	var body []byte
	var errs []error
	for _, g := range formats {
		b, err := formatter.Render(g, e)
		if g == f {
			body = b
		}
		errs = append(errs, err)
	}
	for i := range errs {
		if (errs[i] == nil) != (errs[0] == nil) {
			t.Fatalf("formats disagree on %+v: %s: %v, %s: %v", e, formats[0], errs[0], formats[i], errs[i])
		}
	}
	return body, errs[0] == nil
}

func FuzzRenderJSON(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, name, id string, account, project uint64, hasProject bool,
		objectID []byte, occurredAt string, data []byte) {
		e := fuzzEvent(name, id, account, project, hasProject, objectID, occurredAt, data)
		body, ok := renderAgreeing(t, formatter.JSON, e)
		if !ok {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON: %q", body)
		}
		got, err := decodeOrdered(body)
		if err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		want := []string{"event", "eventId", "accountId", "projectId", "objectId", "occurredAt", "data"}
		if !hasProject {
			want = slices.DeleteFunc(want, func(k string) bool { return k == "projectId" })
		}
		if o := string(bytes.Trim(objectID, " \t\r\n")); o == "" || o == "null" {
			want = slices.DeleteFunc(want, func(k string) bool { return k == "objectId" })
		}
		if !slices.Equal(got.keys, want) {
			t.Fatalf("fields: got %q, want %q", got.keys, want)
		}
		for key, want := range map[string]string{"event": validUTF8(name), "eventId": validUTF8(id),
			"accountId": strconv.FormatUint(account, 10), "occurredAt": validUTF8(occurredAt)} {
			if v, _ := got.field(t, key); v.text != want {
				t.Errorf("%s: got %q, want %q", key, v.text, want)
			}
		}
		var raw struct{ ObjectID, Data json.RawMessage }
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 {
			data = []byte("null")
		}
		var wantData bytes.Buffer
		if err := json.Compact(&wantData, data); err != nil {
			t.Fatalf("rendered %q from data that does not compact: %v", body, err)
		}
		if !bytes.Equal(raw.Data, wantData.Bytes()) {
			t.Errorf("data: got %q, want %q", raw.Data, wantData.Bytes())
		}
	})
}

func FuzzRenderForm(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, name, id string, account, project uint64, hasProject bool,
		objectID []byte, occurredAt string, data []byte) {
		e := fuzzEvent(name, id, account, project, hasProject, objectID, occurredAt, data)
		body, ok := renderAgreeing(t, formatter.Form, e)
		if !ok {
			return
		}
		got, err := parseForm(string(body))
		if err != nil {
			t.Fatalf("parse %q: %v", body, err)
		}
		want := formPairs(decodeJSONBody(t, e))
		if !slices.EqualFunc(got, want, formPair.equal) {
			t.Errorf("parse %q:\ngot  %q\nwant %q", body, got, want)
		}
	})
}

func FuzzRenderXML(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, name, id string, account, project uint64, hasProject bool,
		objectID []byte, occurredAt string, data []byte) {
		e := fuzzEvent(name, id, account, project, hasProject, objectID, occurredAt, data)
		body, ok := renderAgreeing(t, formatter.XML, e)
		if !ok {
			return
		}
		root, err := parseXML(body)
		if err != nil {
			t.Fatalf("parse %q: %v", body, err)
		}
		if err := checkXMLBody(root, decodeJSONBody(t, e)); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	})
}

// validUTF8 is s as encoding/json writes it: each byte of invalid UTF-8 becomes U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}
