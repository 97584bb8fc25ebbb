package modal

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/computesdk-go/compute/driver"
)

// What Info reports and Modal does not keep (the compute name and
// metadata, the creation time, the lifetime, the runtime, ...) travels with
// the sandbox as one Modal tag, set at create: a sandbox found again by id,
// by another process, reads it back with one GetTags call.
const (
	// tagManaged marks the sandboxes this package made; List filters on it.
	tagManaged      = "computesdk"
	tagManagedValue = "1"
	// tagInfo holds the JSON of meta.
	tagInfo = "computesdk-info"
)

// meta is what tagInfo holds.
type meta struct {
	Created  time.Time         `json:"c"`
	Timeout  int64             `json:"t"` // seconds
	Name     string            `json:"n,omitempty"`
	Runtime  driver.Runtime    `json:"r,omitempty"`
	Metadata map[string]string `json:"m,omitempty"`
	Limits   []string          `json:"l,omitempty"`
	Ports    []int             `json:"p,omitempty"`
	Workdir  string            `json:"w,omitempty"`
	Image    string            `json:"i,omitempty"`
	GPU      string            `json:"g,omitempty"`
}

func (m *meta) encode() (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("modal: encoding the sandbox's metadata: %w", err)
	}
	return string(b), nil
}

// decodeMeta reads the tags of a sandbox; a sandbox made by other means
// gives a meta with what is known (nothing), not an error.
func decodeMeta(tags map[string]string) *meta {
	m := &meta{}
	if s, ok := tags[tagInfo]; ok {
		json.Unmarshal([]byte(s), m)
	}
	return m
}

func (m *meta) info(id string) *driver.Info {
	info := &driver.Info{
		ID:        id,
		Provider:  providerName,
		Name:      m.Name,
		Runtime:   m.Runtime,
		CreatedAt: m.Created.Local(),
		Timeout:   time.Duration(m.Timeout) * time.Second,
		Metadata:  maps.Clone(m.Metadata),
		Limits:    append([]string(nil), m.Limits...),
	}
	if m.Created.IsZero() {
		info.CreatedAt = time.Time{}
	}
	return info
}
