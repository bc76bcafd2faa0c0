package rules

import (
	"math"
	"strings"
	"testing"
)

func f(v float64) *float64 { return &v }

func TestThresholdOperators(t *testing.T) {
	cases := []struct {
		op        string
		threshold float64
		v         float64
		want      bool
	}{
		{">", 80, 80.1, true}, {">", 80, 80, false},
		{">=", 80, 80, true}, {">=", 80, 79.9, false},
		{"<", 1, 0, true}, {"<", 1, 1, false},
		{"<=", 1, 1, true}, {"<=", 1, 1.5, false},
		{"==", 0, 0, true}, {"==", 0, 1, false},
		{"!=", 0, 1, true}, {"!=", 0, 0, false},
		{">", 80, math.NaN(), false}, {"<", 1, math.NaN(), false}, {"!=", 0, math.NaN(), true}, // as PromQL
		{">", 80, math.Inf(1), true}, {"<", 1, math.Inf(-1), true},
	}
	for _, tc := range cases {
		r := Rule{Op: tc.op, Value: f(tc.threshold)}
		if got := r.Compare(tc.v); got != tc.want {
			t.Errorf("%v %s %v = %v, want %v", tc.v, tc.op, tc.threshold, got, tc.want)
		}
	}
}

// feed observes values in order (one poll each) and returns the last score.
func feed(d *ZScoreDetector, vs ...float64) Score {
	var s Score
	for _, v := range vs {
		d.BeginPoll()
		s = d.Observe(1, v)
	}
	return s
}

func TestZScore(t *testing.T) {
	noisyFlat := []float64{50, 51, 49, 50, 52, 48, 50, 51, 49}
	mean, sd := meanStd(noisyFlat)
	cases := []struct {
		name      string
		values    []float64
		wantReady bool
		wantFire  bool // |z| > 3
		wantZ     float64
	}{
		{"10σ spike after 9 noisy-flat points fires", append(append([]float64{}, noisyFlat...), mean+10*sd), true, true, 10},
		{"slow ramp does not fire", []float64{10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}, true, false, math.NaN()},
		{"fewer than min_samples never fires", []float64{1, 1, 1, 1, 1000}, false, false, 0},
		{"zero deviation, same value: z = 0", []float64{7, 7, 7, 7, 7, 7}, true, false, 0},
		{"zero deviation, other value: z = +Inf", []float64{7, 7, 7, 7, 7, 8}, true, true, math.Inf(1)},
		{"zero deviation, lower value: z = -Inf", []float64{7, 7, 7, 7, 7, 6}, true, true, math.Inf(-1)},
		{"NaN and Inf are ignored", []float64{50, math.NaN(), 51, math.Inf(1), 49, 50, math.Inf(-1), 52, 48, 50}, true, false, math.NaN()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewZScoreDetector(10, 5, 100, 10)
			s := feed(d, tc.values...)
			if s.Ready != tc.wantReady {
				t.Fatalf("ready = %v (n=%d), want %v", s.Ready, s.N, tc.wantReady)
			}
			if fire := s.Ready && math.Abs(s.Z) > 3; fire != tc.wantFire {
				t.Fatalf("z = %v fires=%v, want %v", s.Z, fire, tc.wantFire)
			}
			if !math.IsNaN(tc.wantZ) && math.Abs(s.Z-tc.wantZ) > 1e-9 && !(math.IsInf(tc.wantZ, 0) && s.Z == tc.wantZ) {
				t.Fatalf("z = %v, want %v", s.Z, tc.wantZ)
			}
		})
	}
}

func TestZScoreMatchesStddevOverTime(t *testing.T) {
	d := NewZScoreDetector(4, 2, 10, 10)
	s := feed(d, 100, 1, 2, 3, 5, 9) // window keeps the previous 4: 2, 3, 5 ... scored against 1,2,3,5
	want := []float64{1, 2, 3, 5}
	m, sd := meanStd(want)
	if s.N != 4 || math.Abs(s.Mean-m) > 1e-12 || math.Abs(s.StdDev-sd) > 1e-12 || math.Abs(s.Z-(9-m)/sd) > 1e-12 {
		t.Fatalf("score %+v, want mean %v sd %v over %v", s, m, sd, want)
	}
	// No NaN/Inf ever got in: the window still gives finite numbers.
	feed(d, math.NaN(), math.Inf(1))
	if s := feed(d, 4); math.IsNaN(s.Mean) || math.IsInf(s.StdDev, 0) {
		t.Fatalf("window poisoned: %+v", s)
	}
}

func meanStd(vs []float64) (float64, float64) {
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	m := sum / float64(len(vs))
	sq := 0.0
	for _, v := range vs {
		sq += (v - m) * (v - m)
	}
	return m, math.Sqrt(sq / float64(len(vs)))
}

func TestZScoreStateIsBounded(t *testing.T) {
	d := NewZScoreDetector(10, 5, 3, 2)
	d.BeginPoll()
	for k := uint64(1); k <= 5; k++ {
		d.Observe(k, 1)
	}
	if d.Tracked() != 3 || d.Dropped != 2 {
		t.Fatalf("tracked %d dropped %d, want 3 and 2 (cap)", d.Tracked(), d.Dropped)
	}
	// Series 1 keeps reporting; 2 and 3 disappear and are forgotten.
	for range 4 {
		d.BeginPoll()
		d.Observe(1, 1)
	}
	if d.Tracked() != 1 {
		t.Fatalf("tracked %d after the others went away, want 1", d.Tracked())
	}
	d.BeginPoll()
	d.Observe(9, 1) // a new series reuses a freed slot
	if d.Tracked() != 2 || len(d.meta) != 3 {
		t.Fatalf("tracked %d slots %d, want 2 tracked in the 3 existing slots", d.Tracked(), len(d.meta))
	}
	if s := d.Observe(9, 1); s.N != 1 {
		t.Fatalf("reused slot kept old values: n=%d", s.N)
	}
}

func TestParseRules(t *testing.T) {
	rs, err := Load("", 3.5)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Rule{}
	for _, r := range rs {
		names[r.Name] = r
	}
	if r := names["InstanceDown"]; r.Expr != "up" || r.Op != "<" || *r.Value != 1 || r.Severity != "critical" {
		t.Errorf("InstanceDown: %+v", r)
	}
	if r := names["CPUUsageAnomaly"]; r.ZScore == nil || r.ZScore.Window != 10 || r.ZScore.MinSamples != 5 || r.ZScore.Threshold != 3.5 {
		t.Errorf("z-score defaults: %+v", r.ZScore)
	}
	bad := []struct{ yaml, want string }{
		{"rules: []", "no rules"},
		{"rules:\n- name: X\n  expr: up\n  severity: high\n  op: '=>'\n  value: 1", `rule 1 ("X"): op "=>" is not one of`},
		{"rules:\n- name: X\n  expr: up\n  severity: high", "needs either a threshold"},
		{"rules:\n- name: X\n  expr: up\n  severity: high\n  op: '>'\n  value: 1\n  zscore: {}", "both a threshold"},
		{"rules:\n- name: X\n  expr: up\n  severity: high\n  zscore: {window: 10, min_samples: 20}", "min_samples 20 must be from 2 to window"},
		{"rules:\n- name: X\n  expr: ''\n  severity: high\n  op: '>'\n  value: 1", "expr is empty"},
		{"rules:\n- name: 'bad name'\n  expr: up\n  severity: high\n  op: '>'\n  value: 1", "name \"bad name\""},
		{"rules:\n- name: X\n  expr: up\n  severity: high\n  op: '>'\n  valeu: 1", "field valeu not found"},
		{"rules:\n- name: X\n  expr: up\n  op: '>'\n  value: 1", "severity is empty"},
		{"rules:\n- name: X\n  expr: up\n  severity: high\n  for: soon\n  op: '>'\n  value: 1", "invalid YAML"},
	}
	for _, tc := range bad {
		_, err := Parse([]byte(tc.yaml), 3)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := Load("/nonexistent/rules.yml", 3); err == nil || !strings.Contains(err.Error(), "/nonexistent/rules.yml") {
		t.Errorf("missing file: %v", err)
	}
}
