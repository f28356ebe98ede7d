package formatter_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/webhookd/webhookd/formatter"
)

// The tests in this file hand bodies to the programs our customers parse them with. They need
// xmllint (libxml2-utils) and php (php-cli); -short skips them, but a full run fails without
// them rather than passing on nothing.

func requireTool(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: not running %s", name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed by this test (apt-get install libxml2-utils php-cli): %v", name, err)
	}
	return path
}

// run feeds stdin to a command and fails the test on a non-zero exit or any output on stderr,
// where libxml2 reports namespace errors without failing.
func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("%s on %q: %v\n%s", name, stdin, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

func TestXMLLint(t *testing.T) {
	xmllint := requireTool(t, "xmllint")
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body, err := formatter.Render(formatter.XML, c.event)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			run(t, body, xmllint, "--noout", "-")
		})
	}
}

// phpParseStr is what a PHP receiver does to a form body ($_POST is filled the same way).
const phpParseStr = `parse_str(file_get_contents("php://stdin"), $a);
echo json_encode($a, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);`

func parseStr(t *testing.T, php string, body []byte) map[string]any {
	t.Helper()
	out := run(t, body, php, "-d", "display_errors=stderr", "-r", phpParseStr)
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decode PHP's output %q: %v", out, err)
	}
	return normalizePHP(got).(map[string]any)
}

// normalizePHP turns PHP arrays that json_encode wrote as lists back into maps with index
// keys, since the form cannot tell a list from an object keyed 0, 1, 2.
func normalizePHP(v any) any {
	switch v := v.(type) {
	case []any:
		m := make(map[string]any, len(v))
		for i, x := range v {
			m[strconv.Itoa(i)] = normalizePHP(x)
		}
		return m
	case map[string]any:
		for k, x := range v {
			v[k] = normalizePHP(x)
		}
	}
	return v
}

// phpView is what parse_str gives back for a value: strings for scalars, and an empty string
// for null and for empty containers, which a flat list of pairs cannot carry.
func phpView(v jsonValue) any {
	if len(v.vals) == 0 {
		return v.text // "" for null, {} and []
	}
	m := make(map[string]any, len(v.vals))
	for i, x := range v.vals {
		key := strconv.Itoa(i)
		if v.kind == 'o' {
			key = v.keys[i]
		}
		m[key] = phpView(x)
	}
	return m
}

func TestPHPParseStr(t *testing.T) {
	php := requireTool(t, "php")
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.phpLossy != "" {
				t.Skipf("PHP cannot read back %s; see TestPHPKeyCorners", c.phpLossy)
			}
			body, err := formatter.Render(formatter.Form, c.event)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := parseStr(t, php, body)
			// The JSON body holds the values every format must carry, already with the
			// invalid UTF-8 of the event's own strings replaced.
			want := phpView(decodeJSONBody(t, c.event))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parse_str(%q):\ngot  %v\nwant %v", body, got, want)
			}
		})
	}
}

// TestPHPKeyCorners pins down what parse_str makes of the keys no encoding can carry to it
// intact, as renderForm's comment lists them, and of the ones that look risky but are fine.
// If PHP changes, this test says so, and the comment must follow.
func TestPHPKeyCorners(t *testing.T) {
	php := requireTool(t, "php")
	deep := func(n int) string {
		return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
	}
	tests := []struct {
		name string
		data string
		want string // parse_str's result without event, eventId, accountId, projectId, objectId, occurredAt
	}{
		{name: "close bracket", data: `{"a]b":{"c":1},"z":2}`, want: `{"data":{"a":"1","z":"2"}}`},
		{name: "empty key", data: `{"":1,"z":2}`, want: `{"data":{"0":"1","z":"2"}}`},
		{name: "one space key", data: `{" ":1,"z":2}`, want: `{"data":{"0":"1","z":"2"}}`},
		{name: "NUL in key", data: `{"a\u0000b":1,"z":2}`, want: `{"data_a":"1","data":{"z":"2"}}`},
		{name: "integer keys", data: `{"0":"x","1":"y"}`, want: `{"data":["x","y"]}`},
		{name: "survivors", data: `{"a.b":1,"a b":2,"a[b":3," a":4,"  ":5,"[":6,"a=&+%":7}`,
			want: `{"data":{"a.b":"1","a b":"2","a[b":"3"," a":"4","  ":"5","[":"6","a=&+%":"7"}}`},
		{name: "64 levels", data: deep(64),
			want: `{"data":` + strings.Repeat(`{"a":`, 64) + `"1"` + strings.Repeat("}", 64) + `}`},
		{name: "65 levels", data: deep(65), want: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body, err := formatter.Render(formatter.Form, event(tt.data))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			// PHP warns about what it drops; the want says what was dropped.
			out := run(t, body, php, "-d", "display_errors=0", "-d", "log_errors=0", "-r",
				`parse_str(file_get_contents("php://stdin"), $a);
unset($a["event"], $a["eventId"], $a["accountId"], $a["projectId"], $a["objectId"], $a["occurredAt"]);
echo json_encode((object)$a, JSON_UNESCAPED_UNICODE);`)
			if string(out) != tt.want {
				t.Errorf("parse_str(%q):\ngot  %s\nwant %s", body, out, tt.want)
			}
		})
	}
}
