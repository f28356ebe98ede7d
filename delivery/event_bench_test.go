package delivery

import (
	"strings"
	"testing"
	"time"
)

func BenchmarkParseEvent(b *testing.B) {
	body := benchBody()
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseEvent(body, "TASK.CREATED", 1<<20, now); err != nil {
			b.Fatal(err)
		}
	}
}

func benchBody() []byte {
	return []byte(`{"id":"evt-123456","event":"TASK.CREATED","accountId":1,"objectId":42,"occurredAt":"2026-12-02T01:02:03.123456789Z","data":{"sentAt":1764637323123456789,"id":42,"title":"Fix the flaky deploy","status":"open","estimate":1.5,"done":false,"owner":{"id":7,"name":"Ada Lovelace"},"tags":["infra","urgent"],"description":"` + strings.Repeat("lorem ipsum ", 70) + `"}}`)
}
