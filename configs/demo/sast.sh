#!/bin/sh
# The demo's stand-in for a SAST tool (gosec, semgrep, ...), so that the
# code schedule of `make run` works on a machine with none installed: it
# reports every Go line that carries one of the demo's fake secrets, as
# SARIF 2.1.0 on standard output. Real schedules name a real analyser.
set -eu
printf '{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[{"tool":{"driver":{"name":"starpipe-demo-sast","version":"1.0","rules":[{"id":"DEMO-SECRET","shortDescription":{"text":"Hard-coded credential"},"properties":{"tags":["security","external/cwe/cwe-798"],"security-severity":"7.5"}}]}},"results":['
sep=''
grep -rn --include='*.go' 'demo-not-a-secret' . 2>/dev/null | grep -v '_test.go' | while IFS=: read -r file line rest; do
	file=${file#./}
	printf '%s{"ruleId":"DEMO-SECRET","level":"error","message":{"text":"A credential is written into the source code."},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"%s"},"region":{"startLine":%s}}}]}' "$sep" "$file" "$line"
	sep=','
done
printf ']}]}\n'
