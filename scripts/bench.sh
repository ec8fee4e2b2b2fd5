#!/usr/bin/env bash
# Every benchmark, each printing side-by-side figures and ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in benchmarks/*.py; do
  # plain_endpoint.py is the baseline server that serve_load.py starts, not a benchmark.
  [ "$script" = benchmarks/plain_endpoint.py ] && continue
  echo "== $script"
  python "$script"
done
