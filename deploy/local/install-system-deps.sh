#!/usr/bin/env bash
# Installs the Debian packages the local stack needs, skipping what is already there:
# Java and Maven (to fetch and run Kafka), PostgreSQL, Prometheus with promtool, Alertmanager,
# and headless Chromium (the report and dashboard pages are opened in it by the tests).
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || command -v prometheus-alertmanager >/dev/null \
  || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  echo "==> system packages: all present (java, maven, postgresql, prometheus, alertmanager, chromium)"
  exit 0
fi

# shellcheck disable=SC2207
missing=($(printf '%s\n' "${missing[@]}" | sort -u))
echo "==> installing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "error: need root to apt-get install ${missing[*]}; install them and run again" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packages' service scripts may try to start daemons; the stack runs its own instead.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "==> system packages installed"
