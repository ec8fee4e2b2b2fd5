#!/usr/bin/env bash
# The main job end to end, offline: analyse the chapter's SimpleCNN.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cnnspec analyze specs/simple_cnn.yaml"
cnnspec analyze specs/simple_cnn.yaml
echo
echo "== cnnspec analyze specs/simple_cnn.yaml --explain (first layers)"
cnnspec analyze specs/simple_cnn.yaml --explain | head -40
