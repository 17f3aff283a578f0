#!/usr/bin/env bash
# Regenerate the committed reference report: every built-in system that does a task of the
# built-in quick suites (the anchors, remix, the speech-enhancement DSP baselines and the shipped
# hifigan checkpoint), on both quick suites, the built-in panel.
# Usage (from the repository root, in the project's environment): bash reports/make.sh
set -euo pipefail
cd "$(dirname "$0")/.."
store="${HARNESS_REPORT_STORE:-harness-runs/reference}"
harness run --system unprocessed --system oracle --system remix --system spectral-gating \
    --system mmse-lsa --system wpe --system hifigan --out "$store" --run-name reference -q
harness report "$store@latest" --format html --audio-items 1 --title "Reference report: built-in systems on the quick suites" --out reports/reference.html --force
harness report "$store@latest" --format md --title "Reference report: built-in systems on the quick suites" --out reports/reference.md --force
