#!/usr/bin/env bash
# Install espeak-ng (Debian's package) for the speech demo when it is missing. Never fails: without espeak-ng the
# demo dials its digit strings as DTMF tones instead, and this script says so and how to get the voices.
set -uo pipefail

if command -v espeak-ng >/dev/null; then
  exit 0
fi
hint="the speech demo (experiment=speech_demo) will use dialled DTMF digits instead of synthesised speech"
if [ "$(id -u)" -ne 0 ]; then
  echo "espeak-ng is not installed and installing it needs root: sudo apt-get install espeak-ng; $hint" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "espeak-ng is not installed and this is not a Debian/Ubuntu host (brew install espeak-ng on macOS); $hint" >&2
  exit 0
fi
echo "installing espeak-ng (apt-get) ..."
# The package index may already be fresh (e.g. after scripts/slurm/local_cluster.sh installed SLURM): try without
# an update first.
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null 2>&1; then
  apt-get update -q >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null 2>&1 ||
    echo "apt-get could not install espeak-ng (no package index reachable?); $hint" >&2
fi
command -v espeak-ng >/dev/null && echo "espeak-ng $(espeak-ng --version | head -1)"
exit 0
