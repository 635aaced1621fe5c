#!/usr/bin/env bash
# Fails if any tracked file is larger than MAX_BYTES (default 5 MB): build
# outputs, databases and scanner corpora do not belong in the repository
# (the corpus lives beside it, see internal/corpus). Files staged for commit
# count too, so that the check catches one before it is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
max=${MAX_BYTES:-5000000}
status=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the work tree
	size=$(stat -c %s -- "$f")
	if [ "$size" -gt "$max" ]; then
		echo "tracked file too large: $f ($size bytes, limit $max)" >&2
		status=1
	fi
done < <(git ls-files -z --cached)
exit $status
