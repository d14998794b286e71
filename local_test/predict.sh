#!/usr/bin/env bash
# POST a payload to a running server's /invocations (serve_local.sh) and print the response body.
# Exits non-zero when the server cannot be reached or answers with an HTTP error.
#
#   local_test/predict.sh                                       # payloads/scores.json
#   local_test/predict.sh local_test/payloads/embeddings.jsonl  # content type from the extension
#   PORT=8081 ACCEPT=application/jsonlines local_test/predict.sh payload.json application/json
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
usage: $(basename "$0") [PAYLOAD [CONTENT_TYPE]]

POST PAYLOAD (default: $LOCAL_TEST_DIR/payloads/scores.json) to
http://\$SERVE_HOST:\$PORT/invocations (default localhost:$DEFAULT_PORT).
  CONTENT_TYPE   default: application/jsonlines for *.jsonl, else application/json
Environment: PORT, SERVE_HOST, ACCEPT (Accept header; default: none), TIMEOUT (seconds, default 60).
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option '$1'" ;;
esac
(($# <= 2)) || { usage >&2; die "too many arguments"; }

payload="${1:-$LOCAL_TEST_DIR/payloads/scores.json}"
[[ -f "$payload" && -r "$payload" ]] || die "payload file '$payload' does not exist or is unreadable"
if (($# == 2)); then
    content_type="$2"
elif [[ "$payload" == *.jsonl ]]; then
    content_type="application/jsonlines"
else
    content_type="application/json"
fi
port="${PORT:-$DEFAULT_PORT}"
require_port "$port"
timeout="${TIMEOUT:-60}"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "TIMEOUT='$timeout' is not a number of seconds"
url="http://${SERVE_HOST:-localhost}:$port/invocations"
accept="${ACCEPT:-}"

if command -v curl >/dev/null 2>&1; then
    headers=(-H "Content-Type: $content_type")
    [[ -z "$accept" ]] || headers+=(-H "Accept: $accept")
    status=0
    curl --silent --show-error --fail-with-body --max-time "$timeout" \
        "${headers[@]}" --data-binary "@$payload" "$url" || status=$?
    echo  # the body has no trailing newline
    ((status == 0)) || note "request failed (curl exit status $status)"
    exit "$status"
fi

# No curl: the same request with Python's standard library.
use_venv
command -v python3 >/dev/null 2>&1 || die "neither curl nor python3 is installed"
exec python3 - "$url" "$payload" "$content_type" "$accept" "$timeout" <<'PY'
import sys
import urllib.error
import urllib.request

url, payload, content_type, accept, timeout = sys.argv[1:]
with open(payload, "rb") as f:
    body = f.read()
headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
request = urllib.request.Request(url, data=body, headers=headers, method="POST")
try:
    with urllib.request.urlopen(request, timeout=float(timeout)) as response:
        print(response.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as exc:
    print(exc.read().decode("utf-8", "replace"))
    sys.exit(f"predict.sh: HTTP {exc.code} from {url}")
except (urllib.error.URLError, OSError) as exc:
    sys.exit(f"predict.sh: cannot reach {url}: {exc}")
PY
