#!/usr/bin/env bash
# Serve the model trained into a local SageMaker tree the way SageMaker runs the image: the tree mounted
# at /opt/ml and `docker run -p PORT:8080 IMAGE serve`. Without a reachable Docker engine (or with
# --no-docker) it runs container/serve directly. Stop it with Ctrl-C (SIGINT) or SIGTERM.
#
#   local_test/serve_local.sh --no-docker &
#   local_test/predict.sh local_test/payloads/scores.json
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
usage: $(basename "$0") [--no-docker | --docker] [--dir DIR] [--port PORT] [IMAGE]

Serve DIR/model (default DIR: $DEFAULT_TREE) on localhost:PORT.
  IMAGE          Docker image to run (default: $DEFAULT_IMAGE)
  --no-docker    run container/serve directly (the default when no Docker engine is reachable)
  --docker       require Docker
  --dir DIR      the tree that train_local.sh trained
  --port PORT    host port (default: \$PORT, else $DEFAULT_PORT)
EOF
}

runner=auto
tree="$DEFAULT_TREE"
image="$DEFAULT_IMAGE"
port="${PORT:-$DEFAULT_PORT}"
image_set=false
while (($#)); do
    case "$1" in
        --no-docker) runner=local ;;
        --docker) runner=docker ;;
        --dir | --port)
            (($# >= 2)) || { usage >&2; die "$1 needs a value"; }
            if [[ "$1" == --dir ]]; then tree="$2"; else port="$2"; fi
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option '$1'" ;;
        *)
            [[ "$image_set" == false ]] || { usage >&2; die "unexpected argument '$1'"; }
            image="$1"
            image_set=true
            ;;
    esac
    shift
done

require_port "$port"
tree="$(require_tree "$tree")"
[[ -n "$(ls -A "$tree/model" 2>/dev/null)" ]] \
    || die "$tree/model is empty: train first (local_test/train_local.sh)"
runner="$(choose_runner "$runner")"

if [[ "$runner" == docker ]]; then
    note "docker run -v $tree:/opt/ml -p $port:8080 --rm $image serve"
    exec docker run -v "$tree:/opt/ml" -p "$port:8080" --rm "$image" serve
fi
use_venv
note "SAGEMAKER_BASE_DIR=$tree SAGEMAKER_BIND_TO_PORT=$port container/serve"
exec env SAGEMAKER_BASE_DIR="$tree" SAGEMAKER_BIND_TO_PORT="$port" "$REPO_ROOT/container/serve"
