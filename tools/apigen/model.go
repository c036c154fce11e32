package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// model is the subset of botocore's "service-2" JSON format that apigen uses.
// Unknown keys are ignored, but a shape feature that would change the wire
// contract (a header or query binding, a document type, ...) is rejected by
// the generator instead of being silently dropped.
type model struct {
	Metadata   metadata              `json:"metadata"`
	Operations map[string]*operation `json:"operations"`
	Shapes     map[string]*shape     `json:"shapes"`
}

type metadata struct {
	APIVersion   string `json:"apiVersion"`
	Protocol     string `json:"protocol"`
	JSONVersion  string `json:"jsonVersion"`
	ServiceID    string `json:"serviceId"`
	SigningName  string `json:"signingName"`
	TargetPrefix string `json:"targetPrefix"`
	UID          string `json:"uid"`
}

type operation struct {
	Name string `json:"name"`
	HTTP struct {
		Method       string `json:"method"`
		RequestURI   string `json:"requestUri"`
		ResponseCode int    `json:"responseCode"`
	} `json:"http"`
	Input  *shapeRef   `json:"input"`
	Output *shapeRef   `json:"output"`
	Errors []*shapeRef `json:"errors"`
}

type shapeRef struct {
	Shape string `json:"shape"`
}

type shape struct {
	Type      string       `json:"type"`
	Members   memberList   `json:"members"`
	Required  []string     `json:"required"`
	Enum      []string     `json:"enum"`
	Min       *json.Number `json:"min"`
	Max       *json.Number `json:"max"`
	Pattern   *string      `json:"pattern"`
	Sensitive bool         `json:"sensitive"`
	Union     bool         `json:"union"`
	Exception bool         `json:"exception"`
	Fault     bool         `json:"fault"`
	Error     *struct {
		HTTPStatusCode int `json:"httpStatusCode"`
	} `json:"error"`
	Member *member `json:"member"` // list element
	Key    *member `json:"key"`    // map key
	Value  *member `json:"value"`  // map value
}

type member struct {
	Name         string `json:"-"`
	Shape        string `json:"shape"`
	Location     string `json:"location"`
	LocationName string `json:"locationName"`
	JSONValue    bool   `json:"jsonvalue"`
}

// memberList keeps a structure's members in model order, which is the order
// the generated fields are declared and validated in.
type memberList []*member

func (l *memberList) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("members: want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("members: duplicate member %q", name)
		}
		seen[name] = true
		m := &member{Name: name}
		if err := dec.Decode(m); err != nil {
			return fmt.Errorf("member %s: %w", name, err)
		}
		*l = append(*l, m)
	}
	_, err = dec.Token()
	return err
}

func loadModel(path string) (*model, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the model file named by the developer running the generator.
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	var m model
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse model %s: %w", path, err)
	}
	if len(m.Shapes) == 0 || len(m.Operations) == 0 {
		return nil, fmt.Errorf("model %s: no shapes or operations", path)
	}
	return &m, nil
}

// bound returns the integer value of a min or max constraint.
func bound(n *json.Number) (int64, bool, error) {
	if n == nil {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("non-integer bound %s", n)
	}
	return v, true, nil
}
