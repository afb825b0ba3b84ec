#!/usr/bin/env bash
# Chromium for the dashboard's browser tests: Debian's `chromium` package, driven by Playwright
# with executable_path (Playwright's own browser download cannot work on these machines).
#   scripts/browser.sh install   install it if /usr/bin/chromium is missing
#   scripts/browser.sh path      print the binary's path (CHROMIUM_PATH wins)
set -euo pipefail

log() { printf '[browser] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

binary() {
  if [ -n "${CHROMIUM_PATH:-}" ]; then echo "$CHROMIUM_PATH"; return; fi
  command -v chromium 2>/dev/null || echo /usr/bin/chromium
}

case "${1:-}" in
  install)
    [ -x "$(binary)" ] && exit 0
    log "installing chromium (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      chromium fonts-dejavu-core >/dev/null
    ;;
  path) binary ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
