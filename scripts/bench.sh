#!/usr/bin/env bash
# Every benchmark, each printing side-by-side figures and ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in benchmarks/*.py; do
  # plain_endpoint.py and kserve_endpoint.py are the baseline servers serve_load.py starts, not benchmarks.
  [ "$script" = benchmarks/plain_endpoint.py ] && continue
  [ "$script" = benchmarks/kserve_endpoint.py ] && continue
  echo "== $script"
  python "$script"
done
