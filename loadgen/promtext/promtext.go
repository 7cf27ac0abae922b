// Package promtext reads the Prometheus text exposition format just enough
// for loadgen to report server figures: every sample line becomes a series
// ("name{labels}" → value), and two scrapes taken before and after a run are
// compared (counters as deltas, histograms as count, mean and quantiles of
// the run's own observations). No Prometheus library: the format is lines.
//
// Use: Parse each scrape, then Compare(before, after, filter...).
package promtext

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Scrape maps a series ("name" or "name{labels}", labels as exposed) to its value.
type Scrape map[string]float64

// Parse reads the text format. Comments and blank lines are skipped; a line
// that is not "series value [timestamp]" is an error naming its number.
func Parse(text []byte) (Scrape, error) {
	s := Scrape{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The series may hold spaces inside quoted label values: split after
		// the closing brace when there is one.
		cut := strings.LastIndexByte(line, '}')
		if cut < 0 {
			cut = strings.IndexAny(line, " \t")
			if cut < 0 {
				return nil, fmt.Errorf("promtext line %d: no value in %q", n, line)
			}
		} else {
			cut++
		}
		series, rest := line[:cut], strings.Fields(line[cut:])
		if len(rest) < 1 || len(rest) > 2 {
			return nil, fmt.Errorf("promtext line %d: want value [timestamp] after %q", n, series)
		}
		v, err := strconv.ParseFloat(rest[0], 64)
		if err != nil {
			return nil, fmt.Errorf("promtext line %d: value %q: %w", n, rest[0], err)
		}
		s[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("promtext: %w", err)
	}
	return s, nil
}

// name is the metric name of a series.
func name(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// Series is one series' figures across a run.
type Series struct {
	Before float64 `json:"before"`
	After  float64 `json:"after"`
	Delta  float64 `json:"delta"`
}

// Histogram is what one histogram (one label set) observed during the run.
type Histogram struct {
	Count float64 `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"` // linear interpolation inside the bucket, as histogram_quantile
	P99   float64 `json:"p99"`
}

// Report is the server side of a run.
type Report struct {
	Series     map[string]Series    `json:"series"`
	Histograms map[string]Histogram `json:"histograms"` // keyed by name{labels without le}
}

// Compare keeps the series whose metric name contains any of the substrings
// and reports them before, after and as a delta, plus every histogram among
// them summarised over the run (bucket deltas).
func Compare(before, after Scrape, substrings ...string) Report {
	r := Report{Series: map[string]Series{}, Histograms: map[string]Histogram{}}
	type bucket struct{ le, count float64 }
	buckets := map[string][]bucket{}
	for series, a := range after {
		n := name(series)
		if !containsAny(n, substrings) {
			continue
		}
		b := before[series]
		r.Series[series] = Series{Before: b, After: a, Delta: a - b}
		if strings.HasSuffix(n, "_bucket") {
			key, le, ok := withoutLe(series)
			if ok {
				buckets[key] = append(buckets[key], bucket{le, a - b})
			}
		}
	}
	for key, bs := range buckets {
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		family := strings.TrimSuffix(name(key), "_bucket")
		labels := strings.TrimPrefix(key, name(key))
		sum := r.Series[family+"_sum"+labels].Delta
		count := r.Series[family+"_count"+labels].Delta
		h := Histogram{Count: count}
		if count > 0 {
			h.Mean = sum / count
			les := make([]float64, len(bs))
			counts := make([]float64, len(bs))
			for i, b := range bs {
				les[i], counts[i] = b.le, b.count
			}
			h.P50, h.P99 = quantile(0.5, les, counts), quantile(0.99, les, counts)
		}
		r.Histograms[family+labels] = h
	}
	return r
}

// quantile interpolates linearly inside the bucket holding rank q·total, as
// Prometheus' histogram_quantile does; in the +Inf bucket it answers the
// highest finite bound.
func quantile(q float64, les, cumulative []float64) float64 {
	total := cumulative[len(cumulative)-1]
	if total <= 0 {
		return 0
	}
	rank := q * total
	for i, c := range cumulative {
		if c < rank {
			continue
		}
		if math.IsInf(les[i], 1) {
			if i == 0 {
				return 0
			}
			return les[i-1]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = les[i-1], cumulative[i-1]
		}
		if c == below {
			return les[i]
		}
		return lo + (les[i]-lo)*(rank-below)/(c-below)
	}
	return les[len(les)-1]
}

// withoutLe splits `name{a="x",le="0.5"}` into `name{a="x"}` and 0.5.
func withoutLe(series string) (key string, le float64, ok bool) {
	open := strings.IndexByte(series, '{')
	if open < 0 || !strings.HasSuffix(series, "}") {
		return "", 0, false
	}
	var kept []string
	found := false
	for _, pair := range splitLabels(series[open+1 : len(series)-1]) {
		if v, isLe := strings.CutPrefix(pair, "le="); isLe {
			f, err := strconv.ParseFloat(strings.Trim(v, `"`), 64)
			if err != nil {
				return "", 0, false
			}
			le, found = f, true
			continue
		}
		kept = append(kept, pair)
	}
	if !found {
		return "", 0, false
	}
	if len(kept) == 0 {
		return series[:open], le, true
	}
	return series[:open] + "{" + strings.Join(kept, ",") + "}", le, true
}

// splitLabels splits a="x",b="y, z" on the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
