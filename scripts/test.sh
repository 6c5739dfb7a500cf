#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest,
# e.g. `scripts/test.sh -k asr` or `scripts/test.sh src/wallie_llm`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${WALLIE_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
