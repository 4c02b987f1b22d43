#!/usr/bin/env bash
# System packages the tests need beyond pip: a JDK for the Spark tests and
# Debian's headless Chromium for the web-page test. Idempotent; skips what is there.
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Python test tools that are no extra of simstd (see the script).
bash "$(dirname "${BASH_SOURCE[0]}")/install-clip-retrieval.sh"
echo "install-system: ok (java: $(command -v java || echo none), chromium: $(command -v chromium || echo none))"
