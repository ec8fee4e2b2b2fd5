#!/usr/bin/env bash
# Every benchmark, each printing side-by-side figures and ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in benchmarks/*.py; do
  echo "== $script"
  python "$script"
done
