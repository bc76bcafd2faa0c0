package rules

import "math"

// Score is the z-score of one new value against the previous values of its series.
type Score struct {
	Z, Mean, StdDev float64
	N               int  // previous values it was scored against
	Ready           bool // N >= min_samples and the value is finite
}

// ZScoreDetector keeps a rolling window of the last values of every series
// of one z-score rule and scores each new value against the previous ones.
//
// Memory: the windows live in one flat slice (window floats per series) and
// a map from the series key to its slot; slots of forgotten series are
// reused. A series not observed for StaleAfter polls is forgotten. At most
// MaxSeries series are tracked; new ones beyond that are not scored.
type ZScoreDetector struct {
	window, minSamples int
	maxSeries          int
	staleAfter         uint32

	index map[uint64]int32 // series key → slot
	vals  []float64        // slot*window … slot*window+window-1: a ring
	meta  []slotMeta
	free  []int32

	poll    uint32 // current poll number
	Dropped int    // series refused this poll because MaxSeries was reached
}

type slotMeta struct {
	head, n  uint16 // next write position; values held
	lastSeen uint32 // poll number
}

// NewZScoreDetector tracks up to maxSeries series; a series unseen for
// staleAfter polls is forgotten.
func NewZScoreDetector(window, minSamples, maxSeries, staleAfter int) *ZScoreDetector {
	return &ZScoreDetector{
		window: window, minSamples: minSamples, maxSeries: maxSeries, staleAfter: uint32(max(staleAfter, 1)),
		index: make(map[uint64]int32),
	}
}

// Tracked is the number of series with a window.
func (d *ZScoreDetector) Tracked() int { return len(d.index) }

// BeginPoll starts a new poll: forgets stale series and resets Dropped.
func (d *ZScoreDetector) BeginPoll() {
	d.poll++
	d.Dropped = 0
	if d.poll%d.staleAfter != 0 { // a sweep every staleAfter polls is enough
		return
	}
	for key, slot := range d.index {
		if d.poll-d.meta[slot].lastSeen > d.staleAfter {
			delete(d.index, key)
			d.free = append(d.free, slot)
		}
	}
}

// Observe scores v against the series' previous values, then adds it to them.
// NaN and ±Inf are neither scored nor kept: they would poison the mean.
//
// Zero deviation (all previous values equal): a new value equal to them has
// z = 0; any other value has z = ±Inf and fires. PromQL's (x - avg) / stddev
// gives the same (0/0 is NaN and never compares true; x/0 is ±Inf).
func (d *ZScoreDetector) Observe(key uint64, v float64) Score {
	slot, ok := d.index[key]
	if !ok {
		if len(d.index) >= d.maxSeries {
			d.Dropped++
			return Score{}
		}
		slot = d.alloc()
		d.index[key] = slot
	}
	m := &d.meta[slot]
	m.lastSeen = d.poll
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Score{N: int(m.n)}
	}
	ring := d.vals[int(slot)*d.window : int(slot)*d.window+d.window]
	s := Score{N: int(m.n)}
	if s.N >= d.minSamples {
		s.Ready = true
		sum := 0.0
		for _, x := range ring[:s.N] {
			sum += x
		}
		s.Mean = sum / float64(s.N)
		sq := 0.0
		for _, x := range ring[:s.N] {
			sq += (x - s.Mean) * (x - s.Mean)
		}
		s.StdDev = math.Sqrt(sq / float64(s.N)) // population, as stddev_over_time
		switch {
		case s.StdDev > 0:
			s.Z = (v - s.Mean) / s.StdDev
		case v == s.Mean:
			s.Z = 0
		default:
			s.Z = math.Copysign(math.Inf(1), v-s.Mean)
		}
	}
	ring[m.head] = v
	m.head = uint16((int(m.head) + 1) % d.window)
	if int(m.n) < d.window {
		m.n++
	}
	return s
}

func (d *ZScoreDetector) alloc() int32 {
	if n := len(d.free); n > 0 {
		slot := d.free[n-1]
		d.free = d.free[:n-1]
		d.meta[slot] = slotMeta{}
		return slot
	}
	d.meta = append(d.meta, slotMeta{})
	d.vals = append(d.vals, make([]float64, d.window)...)
	return int32(len(d.meta) - 1)
}
