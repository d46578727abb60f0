#!/bin/bash
# Installs what is missing, builds Cistern (build/), and runs the demonstration.
set -euo pipefail

cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=OFF
cmake --build build -j"$(nproc)"

echo "demo: not yet available"
