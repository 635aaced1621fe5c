#!/usr/bin/env bash
# Rebuilds BENCHMARKS.md from the per-area sections in docs/benchmarks/.
set -euo pipefail
cd "$(dirname "$0")/.."
{
cat <<'HDR'
# Benchmarks

Every figure below names the command that produced it; `make bench` runs
them all once (`BENCHTIME=3x make bench` for more iterations, or the
package command shown with `-count=6` and benchstat for stable medians).
Measured on the project's reference machine: 2 vCPUs (AMD EPYC), 24 GiB,
Go 1.26.8, linux/amd64. Several of these were taken while other builds ran
on the same two cores; each section says so where it applies, and the
side-by-side ratios (measured in the same run) are the meaningful figures.

| area | reference compared in the same run | result |
| --- | --- | --- |
HDR
cat docs/benchmarks/summary.md
for f in scoring sarif ingest mapping bus pipeline scan; do
	[ -f "docs/benchmarks/$f.md" ] || continue
	echo
	# Demote headings by one level so each file is a section.
	sed -e 's/^# /## /; t; s/^## /### /; t; s/^### /#### /' "docs/benchmarks/$f.md"
done
} > BENCHMARKS.md
