package formatter_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/webhookd/webhookd/formatter"
)

// xmlNode is an element as a parser hands it to a consumer.
type xmlNode struct {
	name     string
	attrs    map[string]string
	text     string
	children []*xmlNode
}

const xmlDeclaration = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

// parseXML reads body with encoding/xml in strict mode, every token to EOF, and fails on
// anything a webhook body should not hold: a second root, a namespace, a comment.
func parseXML(body []byte) (*xmlNode, error) {
	if !bytes.HasPrefix(body, []byte(xmlDeclaration)) {
		return nil, errors.New("no XML declaration")
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	var root *xmlNode
	var stack []*xmlNode
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Space != "" {
				return nil, fmt.Errorf("element %s:%s in a namespace", tok.Name.Space, tok.Name.Local)
			}
			if strings.HasPrefix(strings.ToLower(tok.Name.Local), "xml") {
				return nil, fmt.Errorf("element %s uses a reserved name", tok.Name.Local)
			}
			n := &xmlNode{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				if a.Name.Space != "" {
					return nil, fmt.Errorf("attribute %s:%s in a namespace", a.Name.Space, a.Name.Local)
				}
				n.attrs[a.Name.Local] = a.Value
			}
			switch {
			case len(stack) > 0:
				top := stack[len(stack)-1]
				top.children = append(top.children, n)
			case root != nil:
				return nil, errors.New("a second root element")
			default:
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(tok)
			} else if len(bytes.TrimSpace(tok)) > 0 {
				return nil, fmt.Errorf("text %q outside the root", tok)
			}
		case xml.ProcInst:
			if tok.Target != "xml" || root != nil {
				return nil, fmt.Errorf("processing instruction %s", tok.Target)
			}
		default:
			return nil, fmt.Errorf("unexpected %T", tok)
		}
	}
	if root == nil {
		return nil, errors.New("no root element")
	}
	return root, nil
}

// checkXMLBody compares the parsed XML body with the JSON body: the same fields, in the same
// order, carrying the same strings, except for the characters XML cannot carry (xmlClean).
func checkXMLBody(root *xmlNode, want jsonValue) error {
	if root.name != "webhook" || len(root.attrs) > 0 || root.text != "" {
		return fmt.Errorf("root: got <%s %v>%q, want <webhook>", root.name, root.attrs, root.text)
	}
	var names []string
	for _, c := range root.children {
		names = append(names, c.name)
	}
	if !slices.Equal(names, want.keys) {
		return fmt.Errorf("fields: got %q, want %q", names, want.keys)
	}
	for i, c := range root.children {
		if err := checkXMLValue(c, want.vals[i], nil); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// checkXMLValue compares the element n with the JSON value v. Arrays and objects look alike in
// XML, so v says which n should be; keyAttrs are the attributes the parent's mapping added.
func checkXMLValue(n *xmlNode, v jsonValue, keyAttrs []string) error {
	attrs := append([]string{}, keyAttrs...)
	if v.kind == 'n' {
		attrs = append(attrs, "nil")
		if n.attrs["nil"] != "true" {
			return fmt.Errorf("null: got nil=%q, want nil=true", n.attrs["nil"])
		}
	}
	if len(n.attrs) != len(attrs) {
		return fmt.Errorf("got attributes %v, want only %q", n.attrs, attrs)
	}
	if v.kind != 'o' && v.kind != 'a' {
		if len(n.children) > 0 || n.text != xmlClean(v.text) {
			return fmt.Errorf("got %q and %d children, want %q", n.text, len(n.children), xmlClean(v.text))
		}
		return nil
	}
	if len(n.children) != len(v.vals) || n.text != "" {
		return fmt.Errorf("got %d children and text %q, want %d children", len(n.children), n.text, len(v.vals))
	}
	for i, c := range n.children {
		key, keyAttrs := "item", []string(nil)
		if v.kind == 'o' {
			key = c.name
			if name, ok := c.attrs["name"]; ok && c.name == "field" {
				key, keyAttrs = name, []string{"name"}
			}
			if want := xmlClean(v.keys[i]); key != want {
				return fmt.Errorf("key %d: got %q, want %q", i, key, want)
			}
		} else if c.name != "item" {
			return fmt.Errorf("array element %d: got <%s>, want <item>", i, c.name)
		}
		if err := checkXMLValue(c, v.vals[i], keyAttrs); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// xmlClean is s as an XML body carries it: characters that XML 1.0 does not allow become
// U+FFFD, as do the bytes of invalid UTF-8.
func xmlClean(s string) string {
	var b strings.Builder
	for _, r := range s {
		if !(r == '\t' || r == '\n' || r == '\r' || 0x20 <= r && r <= 0xD7FF ||
			0xE000 <= r && r <= 0xFFFD || 0x10000 <= r && r <= 0x10FFFF) {
			r = '\uFFFD'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestXMLData(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{data: `{"title":"Fix","tags":["a","b"],"owner":{"id":7}}`,
			want: `<data><title>Fix</title><tags><item>a</item><item>b</item></tags><owner><id>7</id></owner></data>`},
		{data: `null`, want: `<data nil="true"/>`},
		{data: `{"n":null,"o":{},"a":[],"s":""}`, want: `<data><n nil="true"/><o></o><a></a><s></s></data>`},
		{data: `[true,-0,1.0e+400]`, want: `<data><item>true</item><item>-0</item><item>1.0e+400</item></data>`},
		{data: `{"1st":1,"a b":2,"xmlns":3,"a:b":4,"é":5,"\"<>":6}`,
			want: `<data><field name="1st">1</field><field name="a b">2</field><field name="xmlns">3</field>` +
				`<field name="a:b">4</field><é>5</é><field name="&quot;&lt;&gt;">6</field></data>`},
		{data: `{"k\t\n\r":"\t\n\r"}`, want: "<data><field name=\"k&#x9;&#xA;&#xD;\">\t\n&#xD;</field></data>"},
		{data: `"\u0000\u001f\ufffe\uffff\ud800 <&>\"' ]]>"`,
			want: `<data>` + strings.Repeat("\uFFFD", 5) + ` &lt;&amp;&gt;&quot;&apos; ]]&gt;</data>`},
	}
	for _, tt := range tests {
		got, err := formatter.Render(formatter.XML, event(tt.data))
		if err != nil {
			t.Errorf("Render(%s): %v", tt.data, err)
			continue
		}
		_, gotData, _ := strings.Cut(string(got), "</occurredAt>")
		if gotData != tt.want+"</webhook>" {
			t.Errorf("Render(%s):\ngot  %s\nwant %s</webhook>", tt.data, gotData, tt.want)
		}
	}
}
