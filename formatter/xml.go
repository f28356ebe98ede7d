package formatter

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

const xmlDeclaration = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

// renderXML writes e as contract §3 lays out: a <webhook> root with one element per body field,
// and data mapped element by element as it is read. It writes the bytes itself: encoding/xml's
// reflection would cost more than the rendering, and needs a Go type where data has none.
func renderXML(e Event) ([]byte, error) {
	objectID, hasObjectID, err := e.objectID()
	if err != nil {
		return nil, fmt.Errorf("render xml: %w", err)
	}
	r, err := newJSONReader(e.data())
	if err != nil {
		return nil, fmt.Errorf("render xml: read data: %w", err)
	}
	var buf bytes.Buffer
	// Most of a body is data, whose markup roughly doubles it; one growth at most.
	buf.Grow(256 + len(e.Name) + len(e.ID) + len(e.OccurredAt) + 2*len(e.Data))
	buf.WriteString(xmlDeclaration)
	buf.WriteString("<webhook>")
	writeXMLText(&buf, "event", e.Name)
	writeXMLText(&buf, "eventId", e.ID)
	buf.WriteString("<accountId>")
	buf.Write(strconv.AppendUint(buf.AvailableBuffer(), e.AccountID, 10))
	buf.WriteString("</accountId>")
	if e.ProjectID != nil {
		buf.WriteString("<projectId>")
		buf.Write(strconv.AppendUint(buf.AvailableBuffer(), *e.ProjectID, 10))
		buf.WriteString("</projectId>")
	}
	if hasObjectID {
		writeXMLText(&buf, "objectId", objectID)
	}
	writeXMLText(&buf, "occurredAt", e.OccurredAt)
	w := xmlWriter{buf: &buf, r: r}
	w.value("data", false)
	buf.WriteString("</webhook>")
	return buf.Bytes(), nil
}

// xmlWriter turns the values of data into elements as it reads them.
type xmlWriter struct {
	buf *bytes.Buffer
	r   jsonReader
}

// value reads one JSON value and writes it as one element: <name> when field is false, else
// <field name="name">, for object keys that cannot be element names (isElementName).
func (w *xmlWriter) value(name string, field bool) {
	w.startTag(name, field)
	switch c := w.r.next(); c {
	case 'n':
		w.r.scalar()
		// An empty element alone could not tell null from "" or an empty container.
		w.buf.WriteString(` nil="true"/>`)
		return
	case '{', '[':
		w.r.open()
		w.buf.WriteByte('>')
		for w.r.more() {
			if c == '[' {
				w.value("item", false)
			} else {
				key := w.r.key()
				w.value(key, !isElementName(key))
			}
		}
	default:
		w.buf.WriteByte('>')
		writeXMLEscaped(w.buf, w.r.scalar(), false)
	}
	if field {
		w.buf.WriteString("</field>")
	} else {
		w.buf.WriteString("</")
		w.buf.WriteString(name)
		w.buf.WriteByte('>')
	}
}

func (w *xmlWriter) startTag(name string, field bool) {
	if !field {
		w.buf.WriteByte('<')
		w.buf.WriteString(name)
		return
	}
	w.buf.WriteString(`<field name="`)
	writeXMLEscaped(w.buf, name, true)
	w.buf.WriteByte('"')
}

// writeXMLText writes <name>s</name> for a body field, whose name is always an element name.
func writeXMLText(buf *bytes.Buffer, name, s string) {
	buf.WriteByte('<')
	buf.WriteString(name)
	buf.WriteByte('>')
	writeXMLEscaped(buf, s, false)
	buf.WriteString("</")
	buf.WriteString(name)
	buf.WriteByte('>')
}

// writeXMLEscaped writes s as character data, or as an attribute value when attr is set, so
// that a parser gives s back and no string can break the document.
//
// XML 1.0 has no way to carry most C0 control characters, U+FFFE and U+FFFF, not even as
// character references, and the document is UTF-8, so those characters and every byte of
// invalid UTF-8 are replaced with U+FFFD, one per byte as encoding/json does for the JSON body.
// That is lossy, but the alternatives are worse: XML 1.1 is read by few parsers, and an escape
// scheme of our own would turn every consumer's strings into something to decode. JSON strings
// decoded from data are already valid UTF-8 (encoding/json replaced bad bytes and lone
// surrogates), so in data only the control characters are concerned.
//
// CR is written as &#xD; because parsers turn a literal CR into LF; in attributes TAB and LF are
// references too, since attribute-value normalisation turns them into spaces.
func writeXMLEscaped(buf *bytes.Buffer, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf && xmlPlain[c] {
			i++
			continue
		}
		var esc string
		size := 1
		switch {
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '&':
			esc = "&amp;"
		case c == '"':
			esc = "&quot;"
		case c == '\'':
			esc = "&apos;"
		case c == '\r':
			esc = "&#xD;"
		case c == '\n':
			if !attr {
				i++
				continue
			}
			esc = "&#xA;"
		case c == '\t':
			if !attr {
				i++
				continue
			}
			esc = "&#x9;"
		case c < 0x20:
			esc = "\uFFFD"
		default:
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			if (r != utf8.RuneError || size != 1) && r != 0xFFFE && r != 0xFFFF {
				i += size
				continue
			}
			esc = "\uFFFD"
		}
		buf.WriteString(s[last:i])
		buf.WriteString(esc)
		i += size
		last = i
	}
	buf.WriteString(s[last:])
}

// xmlPlain marks the ASCII bytes that are written as they are in text and attributes alike.
var xmlPlain = func() (t [utf8.RuneSelf]bool) {
	for c := byte(0x20); c < utf8.RuneSelf; c++ {
		t[c] = c != '<' && c != '>' && c != '&' && c != '"' && c != '\''
	}
	return t
}()
