#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each (default 10s).
#
# Go 1.26's fuzz coordinator can fail a time-bounded run with a bare
# "context deadline exceeded" at the end of -fuzztime when its workers are
# starved of CPU (golang/go#75804, fixed in Go 1.27): no input failed and no
# reproducer is written. When exactly that happens, the target is fuzzed
# again with a count instead of a duration (no deadline to race), and that
# run's result stands. A real finding always writes its input under
# testdata/fuzz/ and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
count=${FUZZ_RERUN_COUNT:-20000x}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target ($dur)"
    corpus="$dir/testdata/fuzz/$target"
    before=$(ls "$corpus" 2>/dev/null | sort || true)
    log=$(mktemp)
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$dur" "$pkg" 2>&1 | tee "$log"; then
      rm -f "$log"; continue
    fi
    after=$(ls "$corpus" 2>/dev/null | sort || true)
    if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"; then
      echo "-- $target: the fuzz coordinator's deadline race (golang/go#75804), no failing input; fuzzing again for $count"
      rm -f "$log"
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$count" "$pkg"
      continue
    fi
    rm -f "$log"
    exit 1
  done
done
