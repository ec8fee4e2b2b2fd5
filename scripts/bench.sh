#!/usr/bin/env bash
# Every benchmark, each printing side-by-side figures and ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in benchmarks/*.py; do
  # plain_endpoint.py, kserve_endpoint.py and grpc_floor.py are the servers serve_load.py starts, not benchmarks.
  [ "$script" = benchmarks/plain_endpoint.py ] && continue
  [ "$script" = benchmarks/kserve_endpoint.py ] && continue
  [ "$script" = benchmarks/grpc_floor.py ] && continue
  echo "== $script"
  python "$script"
done
