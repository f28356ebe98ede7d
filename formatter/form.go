package formatter

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// renderForm writes e as application/x-www-form-urlencoded in the bracket notation that PHP's
// parse_str ($_POST) and Rails' Rack read: data[title]=Fix&data[tags][0]=a&data[owner][id]=7.
//
// Every leaf of data is one pair, in the order received; null and empty containers are a pair
// with an empty value, so that the key still arrives; a scalar data is data=value. Arrays carry
// explicit indexes rather than [], which would break arrays of objects apart.
//
// The structural brackets are written as they are, for readability; brackets inside a key are
// percent-encoded. PHP and Rack decode the whole name before they split it, so to them both are
// the same, and the names decode to what PHP's own http_build_query sends. Some keys cannot
// reach PHP intact however they are encoded (TestPHPKeyCorners pins this down):
//   - a key holding ']' is cut at it, and the rest of its path is dropped: data[a]b][c]=1 gives
//     data[a]=1;
//   - the key "" and the key " " (one space) read as [] and append at the next integer index;
//   - a key holding NUL cuts the whole name at the NUL, so the value lands in a top-level
//     variable such as data_a;
//   - integer-like keys ("7", "-1") become integer keys, so {"0":x} reads like the list [x];
//   - data nested more than 64 levels deep drops the whole of data (max_input_nesting_level),
//     and pairs past the 1000th of the body are ignored (max_input_vars), both php.ini settings.
//
// Keys with '[' (but no ']'), '.', or spaces arrive intact: PHP mangles those only in the
// top-level name, which here is always one of our fixed field names.
func renderForm(e Event) ([]byte, error) {
	objectID, hasObjectID, err := e.objectID()
	if err != nil {
		return nil, fmt.Errorf("render form: %w", err)
	}
	r, err := newJSONReader(e.data())
	if err != nil {
		return nil, fmt.Errorf("render form: read data: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(256 + 3*len(e.Name) + 3*len(e.ID) + len(e.OccurredAt) + 2*len(e.Data))
	buf.WriteString("event=")
	writeFormEscaped(&buf, e.Name)
	buf.WriteString("&eventId=")
	writeFormEscaped(&buf, e.ID)
	buf.WriteString("&accountId=")
	buf.Write(strconv.AppendUint(buf.AvailableBuffer(), e.AccountID, 10))
	if e.ProjectID != nil {
		buf.WriteString("&projectId=")
		buf.Write(strconv.AppendUint(buf.AvailableBuffer(), *e.ProjectID, 10))
	}
	if hasObjectID {
		buf.WriteString("&objectId=")
		writeFormEscaped(&buf, objectID)
	}
	buf.WriteString("&occurredAt=")
	writeFormEscaped(&buf, e.OccurredAt)
	w := formWriter{buf: &buf, r: r, name: append(make([]byte, 0, 64), "data"...)}
	w.value()
	return buf.Bytes(), nil
}

// formWriter turns the values of data into pairs as it reads them.
type formWriter struct {
	buf *bytes.Buffer
	r   jsonReader
	// name is the encoded name of the value being read, data[a][0]; it grows by one
	// [key] per level and is cut back on the way out, so a path costs no allocation.
	name []byte
}

// value reads one JSON value and writes its pairs under w.name.
func (w *formWriter) value() {
	c := w.r.next()
	if c != '{' && c != '[' {
		// Numbers are escaped all the same: the + of 1e+400 would read as a space.
		w.pair(w.r.scalar())
		return
	}
	w.r.open()
	n := len(w.name)
	i := 0
	for ; w.r.more(); i++ {
		w.name = append(w.name, '[')
		if c == '[' {
			w.name = strconv.AppendInt(w.name, int64(i), 10)
		} else {
			w.name = appendFormEscaped(w.name, w.r.key())
		}
		w.name = append(w.name, ']')
		w.value()
		w.name = w.name[:n]
	}
	if i == 0 {
		w.pair("") // the key of an empty container still arrives
	}
}

func (w *formWriter) pair(value string) {
	w.buf.WriteByte('&')
	w.buf.Write(w.name)
	w.buf.WriteByte('=')
	writeFormEscaped(w.buf, value)
}

func writeFormEscaped(buf *bytes.Buffer, s string) {
	buf.Write(appendFormEscaped(buf.AvailableBuffer(), s))
}

// appendFormEscaped appends s encoded as the WHATWG URL standard's
// application/x-www-form-urlencoded serializer does: alphanumerics and *-._ as they are, space as
// +, every other byte as %XX. Invalid UTF-8 becomes U+FFFD, one per byte, as encoding/json
// does for the JSON body, so that the three formats carry the same strings.
func appendFormEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case formPlain[c]:
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		case c < utf8.RuneSelf:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "%EF%BF%BD"...)
				i++
				continue
			}
			for ; size > 0; size-- {
				c = s[i]
				dst = append(dst, '%', hex[c>>4], hex[c&15])
				i++
			}
			continue
		}
		i++
	}
	return dst
}

// formPlain marks the bytes written as they are.
var formPlain = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '*' || c == '-' || c == '.' || c == '_'
	}
	return t
}()
