#!/usr/bin/env bash
# What the explorer's browser tests need: Debian's chromium and chromium-driver (the system's browser;
# nothing is downloaded at test time). Installed quietly with apt-get when missing and this runs as root.
#   bash tests/browser/install.sh            # make test: when they cannot be installed, say so in one line
#   bash tests/browser/install.sh --require  # CI: fail, with apt-get's output, when they cannot be installed
set -uo pipefail
require=0
[ "${1:-}" = "--require" ] && require=1

installed() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
installed && exit 0

log=$(mktemp -t browser-install.XXXXXX)
why=""
if [ "$(id -u)" != 0 ]; then
    why="not root"
elif ! command -v apt-get >/dev/null 2>&1; then
    why="no apt-get on this system"
else
    export DEBIAN_FRONTEND=noninteractive
    # a fresh container has no package lists: update first only when the plain install fails
    if apt-get install -y -qq chromium chromium-driver >"$log" 2>&1 ||
       { apt-get update -qq >>"$log" 2>&1 && apt-get install -y -qq chromium chromium-driver >>"$log" 2>&1; }; then
        installed && { rm -f "$log"; exit 0; }
    fi
    why="apt-get install chromium chromium-driver failed"
fi

if [ "$require" = 1 ]; then
    echo "browser tests cannot run: chromium and chromium-driver are missing and could not be installed ($why)" >&2
    [ -s "$log" ] && tail -n 20 "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
echo "browser tests will be skipped: chromium/chromium-driver missing ($why; as root: apt-get install -y chromium chromium-driver)"
exit 0
