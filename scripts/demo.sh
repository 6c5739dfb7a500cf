#!/usr/bin/env bash
# Set up (idempotent), then ask Wallie a spoken question headless: the real node graph hears
# the question (a committed recording, or the WAV you pass), and writes the spoken answer to
# answer.wav, printing the transcript, the reply and the latency of every stage.
#   scripts/demo.sh [QUESTION.wav] [--output answer.wav]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
exec "${WALLIE_VENV:-$ROOT/.venv}/bin/wallie" demo "$@"
