#!/usr/bin/env bash
# A new user's first day: build the wheel, install it in a fresh virtual environment in an
# empty directory, and run the README's <!-- serve-installed --> block verbatim against a
# handlers module written here. Checks: a signed request is answered, a 20 s handler is cut
# at the configured timeout, the banner names the store, a misspelt variable is reported,
# and a missing PostgreSQL database stops the server with PostgreSQL's own message.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

serve_command=$(awk '/<!-- serve-installed -->/{found=1; next} found && /^```sh/{inside=1; next} inside && /^```/{exit} inside{print}' README.md)
if [ -z "$serve_command" ]; then
    echo "no command found after <!-- serve-installed --> in README.md" >&2
    exit 1
fi

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill -TERM -- "-$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet .venv/bin/pip wheel --no-deps -q -w "$work/dist" "$repo"
python3 -m venv "$work/venv"
quiet "$work/venv/bin/pip" install -q --no-compile "$(ls "$work"/dist/webhook_kit-*.whl)[postgres]"
mkdir "$work/project"
cat > "$work/project/mybot.py" <<'PY'
import time

from webhook_kit import WebhookKit

kit = WebhookKit()


@kit.on_message(keyword="SLOW")
def slow(message):
    time.sleep(20)
    return "too late"


@kit.on_message()
def echo(message):
    return f"Echo: {message.body}"
PY

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$work/project"
export PATH="$work/venv/bin:$PATH" PORT="$port" WEB_CONCURRENCY=2 WEBHOOK_KIT_STOR=redis://127.0.0.1:6379/0
unset WEBHOOK_KIT_STORE WEBHOOK_KIT_BIND
echo "+ $serve_command"
setsid bash -euo pipefail -c "$serve_command" > "$work/server.log" 2>&1 &
server=$!
"$work/venv/bin/python" "$repo/.ci/serve_installed_check.py" "$port" "$work/server.log"
kill -TERM -- "-$server"
wait "$server" || true
server=""

echo "+ the same with WEBHOOK_KIT_STORE naming a database that does not exist"
unset WEBHOOK_KIT_STOR
if WEBHOOK_KIT_STORE=postgresql://postgres@127.0.0.1:5432/webhook_kit_no_such_database \
    timeout 60 bash -euo pipefail -c "$serve_command" > "$work/missing.log" 2>&1; then
    echo "the server started on a database that does not exist" >&2
    exit 1
fi
grep -q '^error: .*database "webhook_kit_no_such_database" does not exist$' "$work/missing.log" || {
    cat "$work/missing.log" >&2
    exit 1
}
echo "serve-installed: ok"
