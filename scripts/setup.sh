#!/usr/bin/env bash
# Installs what building and testing ferrydb needs, skipping what is present:
# clang 22 (SQLite for wasm32), Chromium + ChromeDriver, Firefox ESR and
# WebKitGTK (browser tests), the wasm32 target, the wasm-bindgen CLI matching
# the pinned crate, and npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# clang 22, not Debian's default 14: its -Oz output for SQLite is 4 KB gzip
# smaller (measured), and it is the LLVM that rustc 1.95 uses.
command -v clang-22 >/dev/null || need_apt+=(clang-22)
command -v llvm-ar-22 >/dev/null || need_apt+=(llvm-22)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# Installed without recommended packages: headless tests need none of what
# Firefox recommends (desktop integration, extra fonts and dictionaries).
need_apt_bare=()
[ -x /usr/bin/firefox-esr ] || need_apt_bare+=(firefox-esr)
# WebKitGTK: its WebDriver (which brings the engine), a virtual X display
# to draw in, and the GObject bindings for Debian's python3 that
# tests/e2e/engines/webkit_launcher.py drives it with.
[ -x /usr/bin/WebKitWebDriver ] || need_apt_bare+=(webkit2gtk-driver)
command -v xvfb-run >/dev/null || need_apt_bare+=(xvfb)
command -v xauth >/dev/null || need_apt_bare+=(xauth)
/usr/bin/python3 -c 'import gi; gi.require_version("WebKit2", "4.1")' 2>/dev/null ||
  need_apt_bare+=(python3-gi gir1.2-webkit2-4.1)
if [ "${FERRYDB_NEED_POSTGRES:-0}" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
# The TLS-only test cluster gets its certificates from openssl.
if [ "${FERRYDB_NEED_POSTGRES:-0}" = 1 ] && ! command -v openssl >/dev/null; then
  need_apt+=(openssl)
fi
if [ ${#need_apt[@]} -gt 0 ] || [ ${#need_apt_bare[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} ${need_apt_bare[*]} (apt)"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q >/dev/null
  if [ ${#need_apt[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need_apt[@]}" >/dev/null
  fi
  if [ ${#need_apt_bare[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${need_apt_bare[@]}" >/dev/null
  fi
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The CLI must match the wasm-bindgen crate exactly; read the version from Cargo.toml.
want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing wasm-bindgen-cli $want (about 2 minutes)"
  # Not --locked: one locked dependency is missing from the registry here.
  cargo install -q wasm-bindgen-cli --version "$want"
fi

if [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  # `npm install`, not `npm ci`: the npm here leaves other platforms' optional
  # packages (rollup's native builds) out of the lock file, which `npm ci`
  # then rejects as out of sync. Versions still come from the lock file.
  npm install --no-audit --no-fund --loglevel=error
fi
