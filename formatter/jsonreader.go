package formatter

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonReader walks the data of an event, value by value, for the XML and form renderers.
//
// It is not a parser: it trusts its input to be JSON that json.Valid has accepted (newJSONReader
// checks), and only finds where each value begins and ends. That is what keeps rendering cheap:
// json.Decoder's Token, which the renderers used at first, allocates for every key and value and
// cost five times the JSON rendering (about 450 allocations for 1 KiB of data); this walk takes
// strings without escapes, and numbers, as slices of the input. Object keys come in the order
// received, as they would not through a Go map, and numbers stay the text they were written as.
//
// Strings decode exactly as encoding/json decodes them, which the fuzz tests check against it:
// a lone or reversed surrogate escape becomes U+FFFD. Invalid UTF-8 is left in place for the
// writers, which replace it byte by byte, as encoding/json does.
type jsonReader struct {
	s   string
	pos int
	// buf holds the decoded text of the last string with escapes.
	buf []byte
}

// newJSONReader returns a reader of data, or the error encoding/json gives for it when it is
// not one JSON value. encoding/json also limits nesting to 10000 levels, which bounds the
// recursion of the renderers, and makes all three formats refuse the same events.
func newJSONReader(data []byte) (jsonReader, error) {
	if !json.Valid(data) {
		var raw json.RawMessage
		if err := json.Unmarshal(data, &raw); err != nil {
			return jsonReader{}, err
		}
		return jsonReader{}, errors.New("invalid JSON") // json.Valid and json.Unmarshal disagree
	}
	return jsonReader{s: string(data)}, nil
}

// next returns the first byte of the coming value or delimiter: '{', '[', '"', 't', 'f', 'n',
// or the first character of a number.
func (r *jsonReader) next() byte {
	for {
		switch c := r.s[r.pos]; c {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return c
		}
	}
}

// more reports whether the object or array being read has another member, and steps over the
// comma before it or over the closing bracket.
func (r *jsonReader) more() bool {
	switch r.next() {
	case ',':
		r.pos++
		return true
	case '}', ']':
		r.pos++
		return false
	}
	return true
}

// open steps over the '{' or '[' that next returned.
func (r *jsonReader) open() { r.pos++ }

// key reads an object key and the colon after it.
func (r *jsonReader) key() string {
	k := r.str()
	r.next()
	r.pos++ // ':'
	return k
}

// scalar reads a string, number, true, false or null, and returns its text: the decoded
// string, the number as written, "true", "false", or "" for null.
func (r *jsonReader) scalar() string {
	switch r.next() {
	case '"':
		return r.str()
	case 't':
		r.pos += len("true")
		return "true"
	case 'f':
		r.pos += len("false")
		return "false"
	case 'n':
		r.pos += len("null")
		return ""
	}
	start := r.pos
	for r.pos < len(r.s) && isNumberByte(r.s[r.pos]) {
		r.pos++
	}
	return r.s[start:r.pos]
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str reads a string. Without escapes it is a slice of the input; with them it is decoded
// into buf and copied, which happens far less often.
func (r *jsonReader) str() string {
	start := r.pos + 1
	i := start + strings.IndexByte(r.s[start:], '"')
	j := strings.IndexByte(r.s[start:i], '\\')
	if j < 0 {
		r.pos = i + 1
		return r.s[start:i]
	}
	i = start + j
	b := append(r.buf[:0], r.s[start:i]...)
	for r.s[i] != '"' {
		if c := r.s[i]; c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		switch c := r.s[i+1]; c {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			rr := hex4(r.s[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(rr) {
				// A pair takes two escapes; anything else in place of the second is read
				// on its own, after U+FFFD for the first.
				rr1 := rune(-1)
				if r.s[i] == '\\' && r.s[i+1] == 'u' {
					rr1 = hex4(r.s[i+2 : i+6])
				}
				if rr = utf16.DecodeRune(rr, rr1); rr != utf8.RuneError {
					i += 6
				}
			}
			b = utf8.AppendRune(b, rr)
			continue
		default: // '"', '\\' and '/'
			b = append(b, c)
		}
		i += 2
	}
	r.pos = i + 1
	r.buf = b
	return string(b)
}

// hex4 decodes the four hexadecimal digits of a \u escape, which json.Valid has checked.
func hex4(s string) rune {
	var r rune
	for i := range 4 {
		c := s[i]
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
