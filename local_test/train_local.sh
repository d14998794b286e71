#!/usr/bin/env bash
# Train on a local SageMaker tree the way SageMaker runs the image: the tree mounted at /opt/ml and
# `docker run IMAGE train`. Without a reachable Docker engine (or with --no-docker) it runs
# container/train directly with SAGEMAKER_BASE_DIR pointing at the tree.
#
#   python local_test/make_test_dir.py --quick
#   local_test/train_local.sh --no-docker
#   local_test/train_local.sh object2vec:latest          # Docker, image built by build_and_push.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
usage: $(basename "$0") [--no-docker | --docker] [--dir DIR] [--resume] [IMAGE]

Train Object2Vec on the SageMaker tree DIR (default: $DEFAULT_TREE).
  IMAGE          Docker image to run (default: $DEFAULT_IMAGE)
  --no-docker    run container/train directly (the default when no Docker engine is reachable)
  --docker       require Docker
  --dir DIR      the tree, as written by local_test/make_test_dir.py
  --resume       keep DIR/checkpoints (default: start fresh: model/, output/, checkpoints/ emptied)
EOF
}

runner=auto
tree="$DEFAULT_TREE"
image="$DEFAULT_IMAGE"
resume=false
image_set=false
while (($#)); do
    case "$1" in
        --no-docker) runner=local ;;
        --docker) runner=docker ;;
        --dir)
            (($# >= 2)) || { usage >&2; die "--dir needs a value"; }
            tree="$2"
            shift
            ;;
        --resume) resume=true ;;
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

tree="$(require_tree "$tree")"
runner="$(choose_runner "$runner")"

# A fresh job: no model, failure file or (unless --resume) checkpoint from an earlier run.
rm -rf "${tree:?}/model" "$tree/output"
[[ "$resume" == true ]] || rm -rf "$tree/checkpoints"
mkdir -p "$tree/model" "$tree/output/data"

if [[ "$runner" == docker ]]; then
    note "docker run -v $tree:/opt/ml --rm $image train"
    exec docker run -v "$tree:/opt/ml" --rm "$image" train
fi
use_venv
note "SAGEMAKER_BASE_DIR=$tree container/train"
exec env SAGEMAKER_BASE_DIR="$tree" "$REPO_ROOT/container/train"
