#!/usr/bin/env bash
# Run tests/local as an unprivileged worker: a system user of its own, Debian's python3 and a
# venv of its own (the project's venv may live where that user cannot go), on a copy of the
# sources in /var/tmp.  The local provider isolates labs differently for root and for other
# users (per-lab uids, cgroups and home images need root); `make test` runs both.
#
#   bash tests/local/run_unprivileged.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
user="${HASTEXO_UNPRIVILEGED_USER:-hastexo-lab-test}"
if [ "$(id -u)" != 0 ]; then
    echo "run_unprivileged: not root, so the main test run already was the unprivileged one"
    exit 0
fi
id "$user" >/dev/null 2>&1 \
    || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
work="$(mktemp -d /var/tmp/hastexo-unprivileged.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cp -r hastexo_xblock "$work/"
mkdir -p "$work/tests"
cp tests/__init__.py "$work/tests/"
cp -r tests/local "$work/tests/"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
printf '[pytest]\naddopts = -ra -p no:cacheprovider\ntimeout = 300\n' > "$work/pytest.ini"
# The same versions as the main suite (requirements/test.txt pins them).
grep -E '^(asyncssh|cffi|cryptography|iniconfig|packaging|pluggy|psutil|pycparser|pygments|pytest|pytest-timeout|pyyaml|typing-extensions)==' \
    requirements/test.txt > "$work/requirements.txt"
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$work/requirements.txt" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
chown -R "$user:" "$work"
chmod 711 "$work"
cd "$work"
exec setpriv --reuid="$user" --regid="$user" --init-groups \
    env -i PATH=/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 \
    CI="${CI:-}" HASTEXO_REQUIRE_SANDBOX="${HASTEXO_REQUIRE_SANDBOX:-}" \
    "$work/venv/bin/python" -m pytest tests/local "$@"
