package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// Series is one named line or bar set of a chart; Y values parallel the chart's categories, NaN
// where there is no value.
type Series struct {
	Name  string
	Y     []float64
	Color color.RGBA
}

// Chart is a line chart (a value per category joined by lines) or a grouped bar chart, drawn
// with the standard library only.
type Chart struct {
	Title      string
	XLabel     string
	YLabel     string
	Categories []string // x-axis labels, equally spaced
	Series     []Series
	Bars       bool // grouped bars instead of lines
	LogY       bool // logarithmic y axis (latencies spanning 0.1 ms to 100 ms)
	Width      int
	Height     int
}

// Colors of the background, text and axes, and grid lines (functions, not variables, so the
// package holds no mutable state).
func colWhite() color.RGBA { return color.RGBA{255, 255, 255, 255} }
func colBlack() color.RGBA { return color.RGBA{30, 30, 30, 255} }
func colGrid() color.RGBA  { return color.RGBA{225, 225, 225, 255} }

// canvas is an RGBA image with the drawing primitives the charts need.
type canvas struct {
	img  *image.RGBA
	font font
}

func newCanvas(w, h int) *canvas {
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, w, h)), font: newFont()}
	draw.Draw(c.img, c.img.Bounds(), &image.Uniform{colWhite()}, image.Point{}, draw.Src)
	return c
}

func (c *canvas) fill(x0, y0, x1, y1 int, col color.RGBA) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), &image.Uniform{col}, image.Point{}, draw.Src)
}

// line draws a segment thick pixels wide (Bresenham with a square pen).
func (c *canvas) line(x0, y0, x1, y1, thick int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		c.fill(x0-thick/2, y0-thick/2, x0-thick/2+thick, y0-thick/2+thick, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

// text draws s with its top-left corner at (x, y), each font pixel scale x scale.
func (c *canvas) text(x, y int, s string, scale int, col color.RGBA) {
	for _, r := range s {
		g, _ := c.font.glyph(r)
		for row := range glyphH {
			for bit := range glyphW {
				if g[row]&(1<<(glyphW-1-bit)) != 0 {
					px, py := x+bit*scale, y+row*scale
					c.fill(px, py, px+scale, py+scale, col)
				}
			}
		}
		x += (glyphW + 1) * scale
	}
}

func textWidth(s string, scale int) int { return len([]rune(s)) * (glyphW + 1) * scale }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// Render draws the chart.
func (ch *Chart) Render() *image.RGBA {
	w, h := ch.Width, ch.Height
	if w == 0 {
		w = 900
	}
	if h == 0 {
		h = 540
	}
	c := newCanvas(w, h)
	const s = 2 // text scale
	left, right, top, bottom := 90, 30, 70, 110
	c.text((w-textWidth(ch.Title, s))/2, 14, ch.Title, s, colBlack())
	x0, x1, y0, y1 := left, w-right, top, h-bottom // plot area; y0 is the top
	ymin, ymax := ch.yRange()
	ticks := ch.yTicks(ymin, ymax)
	ypix := func(v float64) int {
		if ch.LogY {
			v = math.Log10(math.Max(v, ymin))
			return y1 - int(float64(y1-y0)*(v-math.Log10(ymin))/(math.Log10(ymax)-math.Log10(ymin)))
		}
		return y1 - int(float64(y1-y0)*(v-ymin)/(ymax-ymin))
	}
	for _, t := range ticks {
		y := ypix(t)
		c.fill(x0, y, x1, y+1, colGrid())
		lbl := fmtAxis(t)
		c.text(x0-8-textWidth(lbl, s), y-glyphH*s/2, lbl, s, colBlack())
	}
	c.text(8, y0-28, ch.YLabel, s, colBlack())
	c.fill(x0, y0, x0+2, y1+1, colBlack())
	c.fill(x0, y1, x1, y1+2, colBlack())
	n := len(ch.Categories)
	slot := float64(x1-x0) / float64(max(n, 1))
	xc := func(i int) int { return x0 + int(slot*(float64(i)+0.5)) }
	for i, cat := range ch.Categories {
		c.text(xc(i)-textWidth(cat, s)/2, y1+10, cat, s, colBlack())
	}
	c.text((x0+x1-textWidth(ch.XLabel, s))/2, y1+34, ch.XLabel, s, colBlack())
	if ch.Bars {
		ns := max(len(ch.Series), 1)
		bw := int(slot*0.8) / ns
		for i := range ch.Categories {
			start := xc(i) - bw*ns/2
			for j, se := range ch.Series {
				if i >= len(se.Y) || math.IsNaN(se.Y[i]) || se.Y[i] <= 0 {
					continue
				}
				bx := start + j*bw
				c.fill(bx+1, ypix(se.Y[i]), bx+bw-1, y1, se.Color)
			}
		}
	} else {
		for _, se := range ch.Series {
			px, py, have := 0, 0, false
			for i, v := range se.Y {
				if math.IsNaN(v) {
					have = false
					continue
				}
				x, y := xc(i), ypix(v)
				if have {
					c.line(px, py, x, y, 3, se.Color)
				}
				c.fill(x-4, y-4, x+5, y+5, se.Color)
				px, py, have = x, y, true
			}
		}
	}
	// Legend below the x label, left to right.
	lx, ly := x0, h-bottom+62
	for _, se := range ch.Series {
		wd := 22 + textWidth(se.Name, s) + 24
		if lx+wd > w-right {
			lx, ly = x0, ly+22
		}
		c.fill(lx, ly+2, lx+16, ly+12, se.Color)
		c.text(lx+22, ly, se.Name, s, colBlack())
		lx += wd
	}
	return c.img
}

// hasData reports whether any series has a value to draw.
func (ch *Chart) hasData() bool {
	for _, se := range ch.Series {
		for _, v := range se.Y {
			if !math.IsNaN(v) && v > 0 {
				return true
			}
		}
	}
	return false
}

// yRange returns the axis bounds: from 0 (linear) or the decade below the smallest value (log)
// to a little above the largest.
func (ch *Chart) yRange() (lo, hi float64) {
	lo, hi = math.Inf(1), 0.0
	for _, se := range ch.Series {
		for _, v := range se.Y {
			if math.IsNaN(v) || v <= 0 {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if hi == 0 {
		if ch.LogY {
			return 1, 10 // a log axis from 0 would never reach its top decade
		}
		return 0, 1
	}
	if ch.LogY {
		return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
	}
	step := niceStep(hi / 5)
	return 0, math.Ceil(hi*1.05/step) * step
}

func (ch *Chart) yTicks(lo, hi float64) []float64 {
	var out []float64
	if ch.LogY {
		for v := lo; v <= hi*1.0001; v *= 10 {
			out = append(out, v)
		}
		return out
	}
	step := niceStep(hi / 5)
	for v := lo; v <= hi*1.0001; v += step {
		out = append(out, v)
	}
	return out
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// fmtAxis formats an axis value compactly: 250k, 1.5M, 0.1.
func fmtAxis(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// SavePNG encodes img to path.
func SavePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// targetColor gives each target the same color in every plot.
func targetColor(name string) color.RGBA {
	switch name {
	case TRedis:
		return color.RGBA{214, 39, 40, 255}
	case TRedisCluster:
		return color.RGBA{255, 127, 14, 255}
	case TEtcd:
		return color.RGBA{44, 160, 44, 255}
	case TShoal1:
		return color.RGBA{31, 119, 180, 255}
	case TShoal3:
		return color.RGBA{148, 103, 189, 255}
	case TShoalCluster:
		return color.RGBA{23, 190, 207, 255}
	}
	return color.RGBA{127, 127, 127, 255}
}

// WritePlots draws the report's charts into dir and returns their file names.
func WritePlots(dir string, res *Results) ([]string, error) {
	var charts []struct {
		file string
		ch   *Chart
	}
	add := func(file string, ch *Chart) {
		charts = append(charts, struct {
			file string
			ch   *Chart
		}{file, ch})
	}
	for _, op := range []string{"GET", "SET"} {
		ch := &Chart{Title: op + " throughput vs concurrency (Go generator, uniform, no pipelining)",
			XLabel: "clients", YLabel: "ops/s"}
		for _, c := range res.Clients {
			ch.Categories = append(ch.Categories, strconv.Itoa(c))
		}
		for _, t := range res.Targets {
			se := Series{Name: t.Name, Color: targetColor(t.Name)}
			for _, c := range res.Clients {
				r := res.Find(t.Name, &Row{Tool: ToolGo, Op: op, Dist: Uniform, Pipeline: 1, Clients: c})
				v := math.NaN()
				if r != nil && r.Throughput().N > 0 {
					v = r.Throughput().Median
				}
				se.Y = append(se.Y, v)
			}
			ch.Series = append(ch.Series, se)
		}
		add("throughput-"+lower(op)+".png", ch)
	}
	for _, op := range []string{"GET", "SET"} {
		ch := &Chart{Title: fmt.Sprintf("%s latency, %d clients (Go generator), log scale", op, res.Fixed),
			XLabel: "target", YLabel: "ms", Bars: true, LogY: true}
		p50 := Series{Name: "p50", Color: color.RGBA{31, 119, 180, 255}}
		p99 := Series{Name: "p99", Color: color.RGBA{255, 127, 14, 255}}
		for _, t := range res.Targets {
			r := res.Find(t.Name, &Row{Tool: ToolGo, Op: op, Dist: Uniform, Pipeline: 1, Clients: res.Fixed})
			a, b := math.NaN(), math.NaN()
			if r != nil && r.Throughput().N > 0 {
				a, b = r.P50().Median, r.P99().Median
			}
			ch.Categories = append(ch.Categories, t.Name)
			p50.Y, p99.Y = append(p50.Y, a), append(p99.Y, b)
		}
		ch.Series = []Series{p50, p99}
		add("latency-"+lower(op)+".png", ch)
	}
	if len(res.Mem) > 0 {
		ch := &Chart{Title: fmt.Sprintf("memory per pair, per copy (%d pairs, 16 B key + %d B value)", res.Mem[0].Pairs, res.ValueSize),
			XLabel: "target", YLabel: "bytes", Bars: true}
		rss := Series{Name: "RSS growth", Color: color.RGBA{31, 119, 180, 255}}
		eng := Series{Name: "engine accounting", Color: color.RGBA{44, 160, 44, 255}}
		for _, m := range res.Mem {
			ch.Categories = append(ch.Categories, m.Target)
			a, b := math.NaN(), math.NaN()
			if m.Err == "" {
				a = m.RSSPerPair()
				if m.EngineName != "" {
					b = m.EnginePerPair()
				}
			}
			rss.Y, eng.Y = append(rss.Y, a), append(eng.Y, b)
		}
		ch.Series = []Series{rss, eng}
		add("memory.png", ch)
	}
	if ch := scalingChart(res); ch != nil {
		add(scalingPlot, ch)
	}
	var files []string
	for _, c := range charts {
		if !c.ch.hasData() {
			continue // e.g. a run of the scaling phase alone has no target rows to draw
		}
		if err := SavePNG(filepath.Join(dir, c.file), c.ch.Render()); err != nil {
			return nil, err
		}
		files = append(files, c.file)
	}
	return files, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// scalingPlot is the file name of the throughput-as-groups-are-added chart.
const scalingPlot = "scaling.png"

// scalingChart draws the scaling phase's median throughput against the number of groups, one
// line per op; nil when the phase did not run or measured nothing.
func scalingChart(res *Results) *Chart {
	sc := res.Scaling
	if sc == nil || len(sc.Steps) == 0 {
		return nil
	}
	ch := &Chart{Title: fmt.Sprintf("throughput vs groups (%d replicas each, %d clients)", sc.Replicas, sc.Clients),
		XLabel: "groups", YLabel: "ops/s"}
	colors := map[string]color.RGBA{"GET": {31, 119, 180, 255}, "SET": {255, 127, 14, 255}}
	for _, st := range sc.Steps {
		ch.Categories = append(ch.Categories, strconv.Itoa(st.Groups))
	}
	for _, op := range scaleOps {
		se := Series{Name: op, Color: colors[op]}
		for i := range sc.Steps {
			v := math.NaN()
			if r := sc.Steps[i].Row(op); r != nil && r.Throughput().N > 0 {
				v = r.Throughput().Median
			}
			se.Y = append(se.Y, v)
		}
		ch.Series = append(ch.Series, se)
	}
	return ch
}
