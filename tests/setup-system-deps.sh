#!/bin/sh
# Install the Debian packages the tests need, if missing. Idempotent and quick when everything
# is present (one `command -v` per package, no apt call). Prints one line per package installed;
# apt's own output is shown only if it fails. Uses sudo unless already root.
#
# PACKAGES: one word per package, "package" when it provides a command of the same name, else
# "package:command", or "package:" for a library (checked with dpkg). To add one, add a word:
# PACKAGES="mbpoll victoria-metrics".
set -eu

PACKAGES="mbpoll libmodbus-dev: gcc systemd:systemd-analyze victoria-metrics"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

quiet() {
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "setup-system-deps: failed: $*" >&2
        exit 1
    fi
}

updated=no
for word in $PACKAGES; do
    pkg=${word%%:*}
    cmd=${word#*:}
    present() {
        if [ -z "$cmd" ]; then dpkg -s "$pkg" >/dev/null 2>&1; else command -v "$cmd" >/dev/null 2>&1; fi
    }
    present && continue
    if [ "$updated" = no ]; then
        quiet $SUDO apt-get update -qq
        updated=yes
    fi
    quiet $SUDO apt-get install -y -qq --no-install-recommends "$pkg"
    if ! present; then
        echo "setup-system-deps: installed $pkg but it is still not usable" >&2
        exit 1
    fi
    echo "installed $pkg"
done
