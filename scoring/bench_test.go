package scoring

import (
	"strings"
	"testing"

	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
)

// benchVectors are realistic: base-only vectors as NVD and nuclei templates
// carry them (most findings), and fuller vectors with temporal and
// environmental metrics as a scope's context produces.
var benchVectors = []string{
	"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
	"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
	"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
	"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
	"CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N",
	"CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N/E:U/RL:O/RC:C/CR:H/IR:M/MUI:R/MC:H/MI:H/MA:H",
	"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C",
	"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:C/C:N/I:N/A:L/E:P/RL:W/RC:R/CR:L/IR:L/AR:H/MAV:A/MAC:L/MPR:N/MUI:N/MS:U/MC:N/MI:L/MA:H",
}

var benchSink float64

// BenchmarkParseScore parses each vector and computes its three scores,
// with starpipe and with github.com/pandatix/go-cvss, in the same run.
func BenchmarkParseScore(b *testing.B) {
	b.Run("impl=starpipe", func(b *testing.B) {
		b.ReportAllocs()
		var sum float64
		for b.Loop() {
			for _, s := range benchVectors {
				v, err := Parse(s)
				if err != nil {
					b.Fatal(err)
				}
				sum += v.Base() + v.Temporal() + v.Environmental()
			}
		}
		benchSink = sum
	})
	b.Run("impl=go-cvss", func(b *testing.B) {
		b.ReportAllocs()
		var sum float64
		for b.Loop() {
			for _, s := range benchVectors {
				if strings.HasPrefix(s, "CVSS:3.0/") {
					c, err := gocvss30.ParseVector(s)
					if err != nil {
						b.Fatal(err)
					}
					sum += c.BaseScore() + c.TemporalScore() + c.EnvironmentalScore()
					continue
				}
				c, err := gocvss31.ParseVector(s)
				if err != nil {
					b.Fatal(err)
				}
				sum += c.BaseScore() + c.TemporalScore() + c.EnvironmentalScore()
			}
		}
		benchSink = sum
	})
}
