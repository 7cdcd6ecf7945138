#!/usr/bin/env bash
# Make sure promtool is on PATH: `make check-deploy` and .ci/run need it to
# check the Prometheus config, the alert rules and their unit tests.
# promtool comes from Debian's prometheus package. The package lists are
# refreshed (once) only when apt does not know the package yet. Recommends are
# skipped (node exporter and friends are not needed to run promtool). On a
# host with systemd the package also enables a Prometheus server; a
# container's policy-rc.d keeps it from starting.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing and this is not a Debian-like system: install Prometheus's promtool and rerun" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "promtool is missing: run 'apt-get install prometheus' as root" >&2; exit 1; }
  sudo="sudo"
fi
candidate=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
  echo "deploy: refreshing package lists for prometheus (promtool)"
  $sudo apt-get update -qq
fi
echo "deploy: installing prometheus (for promtool)"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
command -v promtool >/dev/null 2>&1 || { echo "prometheus installed but promtool is not on PATH" >&2; exit 1; }
