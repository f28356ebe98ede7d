package formatter_test

import (
	"encoding/json"

	"github.com/webhookd/webhookd/formatter"
)

// corpusCase is an event chosen to hurt a renderer; the golden files, the consumer tests and
// the fuzz seeds all start from this list.
type corpusCase struct {
	name  string
	event formatter.Event
	// phpLossy says why PHP's parse_str cannot give this event back; TestPHPKeyCorners pins
	// down what it gives instead.
	phpLossy string
}

func ptr(n uint64) *uint64 { return &n }

// event is a typical event with data replaced.
func event(data string) formatter.Event {
	return formatter.Event{
		Name:       "TASK.CREATED",
		ID:         "evt_01HV8Z",
		AccountID:  1,
		ProjectID:  ptr(42),
		ObjectID:   json.RawMessage(`7`),
		OccurredAt: "2024-05-01T12:30:00Z",
		Data:       json.RawMessage(data),
	}
}

var corpus = []corpusCase{
	{name: "contract_example", event: event(`{"title":"Fix","tags":["a","b"],"owner":{"id":7}}`)},
	{name: "minimal", event: formatter.Event{
		Name: "TASK.DELETED", ID: "1", AccountID: 18446744073709551615, OccurredAt: "2024-05-01T12:30:00+02:00",
	}},
	{name: "data_null", event: event(`null`)},
	{name: "object_id_string", event: func() formatter.Event {
		e := event(`{"id":"abc"}`)
		e.ProjectID = nil
		e.ObjectID = json.RawMessage(`"obj <1> & \"2\" 'x' é"`)
		return e
	}()},
	{name: "object_id_big_number", event: func() formatter.Event {
		e := event(`{}`)
		e.ObjectID = json.RawMessage(` 123456789012345678901234567890 `)
		return e
	}()},
	{name: "object_id_null", event: func() formatter.Event {
		e := event(`1`)
		e.ObjectID = json.RawMessage(`null`)
		return e
	}()},
	{name: "empty_containers", event: event(
		`{"o":{},"a":[],"n":null,"s":"","nested":{"x":[[],{},null,""]}}`)},
	{name: "data_empty_object", event: event(`{}`)},
	{name: "data_empty_array", event: event(`[]`)},
	{name: "data_string", event: event(`"just <text> & more"`)},
	{name: "data_number", event: event(`-0.000`)},
	{name: "data_false", event: event(`false`)},
	{name: "data_whitespace", event: event(" \t\r\n{ \"a\" : [ 1 , \"b\" ] }\n ")},
	{name: "nested_arrays_objects", event: event(
		`{"rows":[{"id":1,"cells":[[1,2],[3]]},{"id":2,"cells":[]}],"m":[[[["deep"]]]]}`)},
	{name: "numbers", event: event(`{"big":123456789012345678901234567890,"exp":1.0e+400,` +
		`"tiny":1e-400,"negzero":-0,"negzerof":-0.0,"neg":-12.50,"E":1E5,"maxu":18446744073709551616}`)},
	{name: "booleans", event: event(`{"t":true,"f":false,"list":[true,false,null]}`)},
	{name: "unicode", event: event(`{"name":"Zoë","emoji":"😀 \ud83d\ude00","cjk":"名前","rtl":"שלום",` +
		`"combining":"e\u0301","bom":"\ufeff","nonchar":"\ufffe\uffff\ufdd0","sep":"\u2028\u2029",` +
		`"replacement":"\ufffd","c1":"\u0080\u009f","astral_nonchar":"\ud83f\udffe\udbff\udfff"}`)},
	{name: "markup", event: event(`{"html":"<b>&amp;</b> \"q\" 'a' ]]> <![CDATA[x]]> <!-- c --> <?pi?>",` +
		`"entity":"&lt; &#x41; &bogus;","<key>":"&","a\"b":"'"}`)},
	{name: "control_characters", event: event(`{"ctl":"\u0000\u0001\b\u000b\f\u001b\u001f\u007f",` +
		`"ws":"a\tb\nc\rd\r\ne","k\u0001y":1,"\r\n":2}`)},
	{name: "invalid_utf8_escaped", event: event(
		`{"lone_high":"\ud800","lone_low":"x\udc00y","pair":"\ud83d\ude00","reversed":"\ude00\ud83d","\udfff":1,` +
			`"mixed":"\ud800\u0041\ud800\ud800\udc00\\\/\"\b\f\u00e9\u20AC"}`)},
	{name: "invalid_utf8_raw", event: event("{\"bytes\":\"\xff\xfe\",\"cut\":\"\xc3(\",\"overlong\":\"\xc0\xaf\"," +
		"\"surrogate\":\"\xed\xa0\x80\",\"trunc\":\"a\xe2\x82\",\"k\xff\":1}")},
	{name: "hostile_fields", event: formatter.Event{
		Name:       "TASK.CREATED<&>",
		ID:         "id \"'<>&\x00\x01\r\n\t\xff end",
		AccountID:  3,
		ProjectID:  ptr(0),
		ObjectID:   json.RawMessage(`"\u0000\r"`),
		OccurredAt: "2024-05-01T12:30:00Z\xc3",
		Data:       json.RawMessage(`{"a":1}`),
	}},
	{name: "xml_names", event: event(`{"1st":1,"a b":2,"a:b":3,"-x":5,".x":6,"xml":7,"XmlFoo":8,` +
		`"xmlns":9,"x-ml":10,"_ok":11,"ok.name-1_2":12,"café":13,"😀":14,"名前":15,"a\u0300":16,` +
		`"\u0300a":17,"field":18,"item":19,"a<b":20,"a&b":21,"Ⅻ":22,"\u3400":23,"\ufffd":24}`)},
	{name: "php_safe_keys", event: event(`{"a.b":1,"a b":2,"a[b":3," lead":4,"  ":5,"trail ":6,` +
		`"per%cent":7,"amp&eq=":8,"plus+":9,"q?x#y":10,"[":11,"..":12,"-1":13,"01":14,"0":15}`)},
	{name: "php_lossy_keys", event: event(`{"a]b":{"c":1},"x":{"":2," ":3},"n\u0000ul":4}`),
		phpLossy: "keys with ], the empty key, the one-space key and NUL"},
}
