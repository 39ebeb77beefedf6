// Command amatch is a test oracle: it answers label-matcher and fingerprint questions with
// Alertmanager's own code (pkg/labels.ParseMatcher, the classic parser, and
// prometheus/common/model.LabelSet.Fingerprint), so that kafka-healing's Rust
// reimplementation can be checked against it (tests/it/am_oracle.rs).
//
// Input: JSON values on stdin, one per line, each either
//
//	{"matcher": "name=\"value\"", "labels": {"name": "value"}}
//	{"fingerprint": {"name": "value"}}
//
// Output: one JSON line per input, in order:
//
//	{"ok": true, "name": "...", "type": "=~", "value": "...", "matches": false}
//	{"ok": false, "error": "..."}
//	{"fingerprint": "0123456789abcdef"}
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
)

type request struct {
	Matcher     *string            `json:"matcher"`
	Labels      map[string]string  `json:"labels"`
	Fingerprint *map[string]string `json:"fingerprint"`
}

type matcherAnswer struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	Value   string `json:"value"`
	Matches bool   `json:"matches"`
}

type fingerprintAnswer struct {
	Fingerprint string `json:"fingerprint"`
}

func main() {
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for n := 1; ; n++ {
		var req request
		if err := dec.Decode(&req); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintf(os.Stderr, "amatch: input value %d: %v\n", n, err)
			os.Exit(2)
		}
		var answer any
		switch {
		case req.Matcher != nil:
			answer = matcher(*req.Matcher, req.Labels)
		case req.Fingerprint != nil:
			ls := model.LabelSet{}
			for k, v := range *req.Fingerprint {
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
			answer = fingerprintAnswer{Fingerprint: fmt.Sprintf("%016x", uint64(ls.Fingerprint()))}
		default:
			fmt.Fprintf(os.Stderr, "amatch: input value %d has neither \"matcher\" nor \"fingerprint\"\n", n)
			os.Exit(2)
		}
		if err := enc.Encode(answer); err != nil {
			fmt.Fprintf(os.Stderr, "amatch: %v\n", err)
			os.Exit(2)
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "amatch: %v\n", err)
		os.Exit(2)
	}
}

func matcher(s string, lset map[string]string) matcherAnswer {
	m, err := labels.ParseMatcher(s)
	if err != nil {
		return matcherAnswer{OK: false, Error: err.Error()}
	}
	// As Alertmanager does (labels.Matchers.Matches): a missing label is "".
	return matcherAnswer{
		OK:      true,
		Name:    m.Name,
		Type:    m.Type.String(),
		Value:   m.Value,
		Matches: m.Matches(lset[m.Name]),
	}
}
