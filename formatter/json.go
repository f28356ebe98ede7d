package formatter

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// jsonBody fixes the field order of a JSON body.
type jsonBody struct {
	Event      string          `json:"event"`
	EventID    string          `json:"eventId"`
	AccountID  uint64          `json:"accountId"`
	ProjectID  *uint64         `json:"projectId,omitempty"`
	ObjectID   json.RawMessage `json:"objectId,omitempty"`
	OccurredAt string          `json:"occurredAt"`
	Data       json.RawMessage `json:"data"`
}

func renderJSON(e Event) ([]byte, error) {
	_, hasObjectID, err := e.objectID()
	if err != nil {
		return nil, fmt.Errorf("render json: %w", err)
	}
	objectID := e.ObjectID
	if !hasObjectID {
		objectID = nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Receivers compare strings with what they stored; escaping <, > and & would change them.
	enc.SetEscapeHTML(false)
	err = enc.Encode(jsonBody{
		Event:      e.Name,
		EventID:    e.ID,
		AccountID:  e.AccountID,
		ProjectID:  e.ProjectID,
		ObjectID:   objectID,
		OccurredAt: e.OccurredAt,
		Data:       e.data(),
	})
	if err != nil {
		return nil, fmt.Errorf("render json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
