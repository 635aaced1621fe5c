// Package sarifgen writes large synthetic SARIF 2.1.0 logs shaped like
// CodeQL output (rules with CWE tags and security-severity, results with
// locations, partial fingerprints, a short code flow and a snippet) for the
// parser's benchmarks and its memory measurement.
package sarifgen

import (
	"bufio"
	"fmt"
	"io"
)

// Rules is how many rules the generated driver declares.
const Rules = 200

// Write writes one run with n results to w. It is deterministic.
func Write(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	fmt.Fprint(bw, `{"$schema":"https://json.schemastore.org/sarif-2.1.0.json","version":"2.1.0","runs":[{"tool":{"driver":{"name":"CodeQL","semanticVersion":"2.20.4","rules":[`)
	for i := range Rules {
		if i > 0 {
			bw.WriteByte(',')
		}
		fmt.Fprintf(bw, `{"id":"lang/rule-%03d","name":"lang/rule-%03d","shortDescription":{"text":"Rule %d short description"},"fullDescription":{"text":"Rule %d explains at some length why this pattern is dangerous and what to do about it."},"defaultConfiguration":{"level":"warning"},"properties":{"tags":["security","external/cwe/cwe-%03d"],"precision":"high","security-severity":"%d.%d","problem.severity":"error"}}`,
			i, i, i, i, 20+i%80, 1+i%9, i%10)
	}
	fmt.Fprint(bw, `]}},"artifacts":[{"location":{"uri":"src/main.go","uriBaseId":"%SRCROOT%"}}],"results":[`)
	for i := range n {
		if i > 0 {
			bw.WriteByte(',')
		}
		r := i % Rules
		file := i % 5000
		line := 1 + i%3000
		fmt.Fprintf(bw, `
{"ruleId":"lang/rule-%03d","ruleIndex":%d,"rule":{"id":"lang/rule-%03d","index":%d},"level":"error","message":{"text":"This value flows from [user input](1) into a sink in function handler%d."},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"pkg/module%d/file%d.go","uriBaseId":"%%SRCROOT%%"},"region":{"startLine":%d,"startColumn":%d,"endColumn":%d,"snippet":{"text":"\tresult, err := db.Query(\"SELECT * FROM t WHERE id = \" + id)\n"}}}}],"partialFingerprints":{"primaryLocationLineHash":"%016x:1","primaryLocationStartColumnFingerprint":"%d"},"codeFlows":[{"threadFlows":[{"locations":[{"location":{"physicalLocation":{"artifactLocation":{"uri":"pkg/module%d/file%d.go","uriBaseId":"%%SRCROOT%%"},"region":{"startLine":%d,"startColumn":5,"endColumn":20}},"message":{"text":"source"}}},{"location":{"physicalLocation":{"artifactLocation":{"uri":"pkg/module%d/file%d.go","uriBaseId":"%%SRCROOT%%"},"region":{"startLine":%d,"startColumn":9,"endColumn":40}},"message":{"text":"sink"}}}]}]}],"relatedLocations":[{"id":1,"physicalLocation":{"artifactLocation":{"uri":"pkg/module%d/file%d.go"},"region":{"startLine":%d}},"message":{"text":"user input"}}]}`,
			r, r, r, r, i%97, file%50, file, line, 5+i%40, 30+i%40,
			uint64(i)*0x9E3779B97F4A7C15, i%40,
			file%50, file, line, file%50, file, line+1, file%50, file, line)
	}
	fmt.Fprint(bw, "\n],\"columnKind\":\"utf16CodeUnits\"}]}\n")
	return bw.Flush()
}
