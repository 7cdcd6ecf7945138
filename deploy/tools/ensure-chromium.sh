#!/usr/bin/env bash
# Make sure chromium is on PATH: the merchant page test
# (settlement/merchant) renders the page in headless Chromium, and .ci/run
# runs it with CI set, where a missing browser fails the test instead of
# skipping it. chromium comes from Debian's chromium package. The package
# lists are refreshed (once) only when apt does not know the package yet.
# Recommends are skipped (fonts and desktop helpers are not needed to dump a
# DOM).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and this is not a Debian-like system: install Chromium and rerun" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "chromium is missing: run 'apt-get install chromium' as root" >&2; exit 1; }
  sudo="sudo"
fi
candidate=$(apt-cache policy chromium 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
  echo "merchant pages: refreshing package lists for chromium"
  $sudo apt-get update -qq
fi
echo "merchant pages: installing chromium (headless page test)"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
command -v chromium >/dev/null 2>&1 || { echo "chromium installed but not on PATH" >&2; exit 1; }
