package formatter_test

import (
	"testing"

	"github.com/webhookd/webhookd/formatter"
)

// benchEvent is a typical TASK.UPDATED: about 1 KiB of data, a few levels deep, with some text
// to escape.
var benchEvent = event(`{"id":81234,"title":"Fix login redirect on Safari","status":"in_progress",` +
	`"description":"Users on Safari 17 get <302> loops & \"session expired\" after SSO; see ticket #4411.\n` +
	`Steps: 1) log in 2) open /settings 3) watch the network tab.","priority":2,"estimate":3.5,` +
	`"dueDate":"2024-06-01","completed":false,"parentId":null,"tags":["bug","auth","safari","p2"],` +
	`"owner":{"id":7,"name":"Zoë Ångström","email":"zoe@example.com"},` +
	`"assignees":[{"id":7,"name":"Zoë Ångström"},{"id":12,"name":"Raj Patel"}],` +
	`"customFields":{"Customer":"ACME Corp","Story points":5,"Sprint":"2024-W22","Billable":true},` +
	`"checklist":[{"text":"reproduce","done":true},{"text":"fix","done":false},{"text":"test","done":false}],` +
	`"createdAt":"2024-05-01T09:00:00Z","updatedAt":"2024-05-01T12:30:00Z"}`)

func BenchmarkRender(b *testing.B) {
	for _, f := range formats {
		b.Run(string(f), func(b *testing.B) {
			body, err := formatter.Render(f, benchEvent)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := formatter.Render(f, benchEvent); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
