// Package rules holds alertrca's rule definitions (threshold and rolling
// z-score), the detectors that evaluate them, the Prometheus poller, and the
// generator of Prometheus rule files from the same definitions.
package rules

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Rule is one alerting rule: a PromQL expression selecting series, and
// either a threshold (Op, Value) or a rolling z-score (ZScore).
type Rule struct {
	Name        string            `yaml:"name"`
	Expr        string            `yaml:"expr"`
	Severity    string            `yaml:"severity"`
	For         model.Duration    `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
	Op          string            `yaml:"op,omitempty"`
	Value       *float64          `yaml:"value,omitempty"`
	ZScore      *ZScore           `yaml:"zscore,omitempty"`
}

// ZScore scores each new value of a series against its previous Window values.
type ZScore struct {
	Window     int     `yaml:"window,omitempty"`      // previous values kept (default 10)
	MinSamples int     `yaml:"min_samples,omitempty"` // previous values needed before scoring (default 5)
	Threshold  float64 `yaml:"threshold,omitempty"`   // |z| above which it fires (default Z_THRESHOLD)
}

// File is the YAML format of RULES_FILE.
type File struct {
	Rules []Rule `yaml:"rules"`
}

// Operators a threshold rule may use, as PromQL writes them.
var operators = map[string]func(a, b float64) bool{
	">":  func(a, b float64) bool { return a > b },
	">=": func(a, b float64) bool { return a >= b },
	"<":  func(a, b float64) bool { return a < b },
	"<=": func(a, b float64) bool { return a <= b },
	"==": func(a, b float64) bool { return a == b },
	"!=": func(a, b float64) bool { return a != b },
}

// Compare applies the rule's threshold to v.
func (r *Rule) Compare(v float64) bool { return operators[r.Op](v, *r.Value) }

// IsZScore tells whether the rule is a z-score rule.
func (r *Rule) IsZScore() bool { return r.ZScore != nil }

var alertNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// validate checks r and fills the z-score defaults.
func (r *Rule) validate(defaultZ float64) error {
	switch {
	case !alertNameRE.MatchString(r.Name):
		return fmt.Errorf("name %q must match %s", r.Name, alertNameRE)
	case strings.TrimSpace(r.Expr) == "":
		return errors.New("expr is empty")
	case strings.TrimSpace(r.Severity) == "":
		return errors.New("severity is empty")
	case r.For < 0:
		return errors.New("for must not be negative")
	}
	for name := range r.Labels {
		if !model.LabelName(name).IsValidLegacy() || name == "alertname" || name == "severity" {
			return fmt.Errorf("label %q is not allowed (a Prometheus label name other than alertname and severity)", name)
		}
	}
	hasThreshold := r.Op != "" || r.Value != nil
	switch {
	case hasThreshold && r.ZScore != nil:
		return errors.New("has both a threshold (op, value) and a zscore block: choose one")
	case !hasThreshold && r.ZScore == nil:
		return errors.New("needs either a threshold (op and value) or a zscore block")
	case hasThreshold:
		if _, ok := operators[r.Op]; !ok {
			return fmt.Errorf("op %q is not one of > >= < <= == !=", r.Op)
		}
		if r.Value == nil {
			return errors.New("op without value")
		}
		return nil
	}
	z := r.ZScore
	if z.Window == 0 {
		z.Window = 10
	}
	if z.MinSamples == 0 {
		z.MinSamples = min(5, z.Window)
	}
	if z.Threshold == 0 {
		z.Threshold = defaultZ
	}
	switch {
	case z.Window < 2 || z.Window > 1000:
		return fmt.Errorf("zscore.window %d must be from 2 to 1000", z.Window)
	case z.MinSamples < 2 || z.MinSamples > z.Window:
		return fmt.Errorf("zscore.min_samples %d must be from 2 to window (%d)", z.MinSamples, z.Window)
	case z.Threshold <= 0:
		return fmt.Errorf("zscore.threshold %g must be greater than 0", z.Threshold)
	}
	return nil
}

//go:embed defaults.yml
var defaultRules []byte

// Load reads the rules of path, or the built-in defaults when path is empty.
// defaultZ is the z-score threshold of rules that do not set one (Z_THRESHOLD).
func Load(path string, defaultZ float64) ([]Rule, error) {
	src, name := defaultRules, "built-in rules"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("rules file: %w", err)
		}
		src, name = b, "rules file "+path
	}
	rs, err := Parse(src, defaultZ)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rs, nil
}

// Parse decodes and validates a rules document. Unknown fields are errors, so
// that a typo does not silently change a rule.
func Parse(src []byte, defaultZ float64) ([]Rule, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if len(f.Rules) == 0 {
		return nil, errors.New("no rules (want a top-level 'rules:' list)")
	}
	seen := map[string]bool{}
	for i := range f.Rules {
		r := &f.Rules[i]
		if err := r.validate(defaultZ); err != nil {
			return nil, fmt.Errorf("rule %d (%q): %w", i+1, r.Name, err)
		}
		key := r.Name + "\x00" + r.Expr
		if seen[key] {
			return nil, fmt.Errorf("rule %d (%q): same name and expr as an earlier rule", i+1, r.Name)
		}
		seen[key] = true
	}
	return f.Rules, nil
}
