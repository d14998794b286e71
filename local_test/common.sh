# shellcheck shell=bash
# Shared by train_local.sh, serve_local.sh and predict.sh (sourced, never run).

LOCAL_TEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_TEST_DIR/.." && pwd)"
# shellcheck disable=SC2034  # the defaults below are read by the scripts that source this file
DEFAULT_IMAGE="object2vec:latest"
# shellcheck disable=SC2034
DEFAULT_TREE="$LOCAL_TEST_DIR/test_dir"
# shellcheck disable=SC2034
DEFAULT_PORT=8080

# die MESSAGE: print "<script>: error: MESSAGE" to stderr and exit 2.
die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

# note MESSAGE: a progress line on stderr.
note() {
    echo "$(basename "$0"): $*" >&2
}

# docker_reachable: true when a docker client exists and its engine answers.
docker_reachable() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# choose_runner auto|docker|local: print "docker" or "local"; "auto" falls back to local (with a note)
# when no Docker engine is reachable.
choose_runner() {
    case "$1" in
        local) echo local ;;
        docker)
            docker_reachable || die "--docker given but no Docker engine is reachable (docker info failed)"
            echo docker
            ;;
        auto)
            if docker_reachable; then
                echo docker
            else
                note "no Docker engine reachable (docker info failed): running container/ directly"
                echo local
            fi
            ;;
        *) die "unknown runner '$1'" ;;
    esac
}

# use_venv: put the repository's .venv/bin first on PATH when it exists (container/* run with it).
use_venv() {
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        PATH="$REPO_ROOT/.venv/bin:$PATH"
        export PATH
    fi
}

# require_tree DIR: DIR must be a SageMaker tree made by make_test_dir.py; prints its absolute path.
require_tree() {
    [[ -f "$1/input/config/hyperparameters.json" ]] \
        || die "$1 is not a SageMaker tree (no input/config/hyperparameters.json): run" \
               "'python local_test/make_test_dir.py --quick' first (or pass --dir)"
    (cd "$1" && pwd)
}

# require_port VALUE: VALUE must be a TCP port number.
require_port() {
    if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then
        die "'$1' is not a port number (1-65535)"
    fi
}
