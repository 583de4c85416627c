#!/usr/bin/env bash
# Compiles the quick start exactly as README.md shows it (between the quickstart markers).
set -euo pipefail
readme=$1; include=$2; out=$3
mkdir -p "$out"
sed -n '/<!-- quickstart:begin -->/,/<!-- quickstart:end -->/p' "$readme" | sed '1,2d;$d' | sed '$d' > "$out/quickstart.cpp"
grep -q 'status.add_will' "$out/quickstart.cpp" || { echo "quick start block not found in $readme" >&2; exit 1; }
${CXX:-c++} -std=c++17 -fsyntax-only -Wall -Werror -I "$include" "$out/quickstart.cpp"
echo "README quick start compiles ($(wc -l < "$out/quickstart.cpp") lines)"
