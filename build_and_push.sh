#!/usr/bin/env bash
# Build the Object2Vec image and push it to Amazon ECR, tagged with the git commit and `latest`
# (and TAG when given). The ECR repository IMAGE is created when missing. Region and account come
# from the AWS configuration: AWS_REGION / AWS_DEFAULT_REGION, else `aws configure get region`;
# `aws sts get-caller-identity` for the account.
#
#   ./build_and_push.sh object2vec                 # GPU image from ./Dockerfile
#   ./build_and_push.sh --cpu object2vec-cpu       # CPU image from docker/Dockerfile.cpu
#   ./build_and_push.sh object2vec v1.0            # also tag :v1.0
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<EOF
usage: $(basename "$0") [--cpu] IMAGE [TAG]

Build IMAGE (an ECR repository name such as object2vec) and push
<account>.dkr.ecr.<region>.amazonaws.com/IMAGE:{<git commit>,latest[,TAG]}.
  --cpu    build docker/Dockerfile.cpu (CPU-only torch) instead of Dockerfile (CUDA)
Needs: a running Docker engine, the AWS CLI v2 and AWS credentials with ECR permissions.
EOF
}

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

dockerfile="$repo_root/Dockerfile"
image=""
extra_tag=""
while (($#)); do
    case "$1" in
        --cpu) dockerfile="$repo_root/docker/Dockerfile.cpu" ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option '$1'" ;;
        *)
            if [[ -z "$image" ]]; then
                image="$1"
            elif [[ -z "$extra_tag" ]]; then
                extra_tag="$1"
            else
                usage >&2
                die "unexpected argument '$1'"
            fi
            ;;
    esac
    shift
done

[[ -n "$image" ]] || { usage >&2; die "IMAGE is required"; }
# ECR repository names: lower case, digits and . _ - / separators, 2-256 characters.
[[ "$image" =~ ^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$ && ${#image} -ge 2 \
    && ${#image} -le 256 ]] || die "'$image' is not a valid ECR repository name (lower case a-z, 0-9, . _ - /)"
if [[ -n "$extra_tag" && ! "$extra_tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    die "'$extra_tag' is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
fi
[[ -f "$dockerfile" ]] || die "$dockerfile is missing"

# Tools and credentials first, so that a long build does not end in a failed push.
command -v docker >/dev/null 2>&1 || die "docker is not installed (https://docs.docker.com/get-docker/)"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable: start it (docker info fails)"
command -v aws >/dev/null 2>&1 || die "the AWS CLI is not installed (https://aws.amazon.com/cli/)"
command -v git >/dev/null 2>&1 || die "git is not installed"

account="$(aws sts get-caller-identity --query Account --output text 2>/dev/null)" \
    || die "no usable AWS credentials: 'aws sts get-caller-identity' failed (run 'aws configure' or" \
           "set AWS_PROFILE)"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
[[ -n "$region" ]] || region="$(aws configure get region 2>/dev/null || true)"
[[ -n "$region" ]] || die "no AWS region configured: run 'aws configure set region <region>' or set AWS_REGION"
domain="amazonaws.com"
[[ "$region" != cn-* ]] || domain="amazonaws.com.cn"
registry="$account.dkr.ecr.$region.$domain"

commit="$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null)" \
    || die "$repo_root is not a git checkout with a commit: the image is tagged with the commit"
if [[ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no)" ]]; then
    commit="$commit-dirty"  # the tag must not claim a commit the image does not match
fi
tags=("$commit" latest)
[[ -z "$extra_tag" ]] || tags+=("$extra_tag")

# SageMaker runs `train` / `serve` from PATH: they must be executable (aws/amazon-sagemaker-examples#739).
chmod +x "$repo_root/container/train" "$repo_root/container/serve"

echo "building $image:$commit from ${dockerfile#"$repo_root"/}"
docker build -f "$dockerfile" -t "$image:$commit" "$repo_root"

if ! aws ecr describe-repositories --region "$region" --repository-names "$image" >/dev/null 2>&1; then
    echo "creating ECR repository $image in $region"
    aws ecr create-repository --region "$region" --repository-name "$image" \
        --image-scanning-configuration scanOnPush=true >/dev/null
fi
aws ecr get-login-password --region "$region" \
    | docker login --username AWS --password-stdin "$registry" >/dev/null

for tag in "${tags[@]}"; do
    docker tag "$image:$commit" "$registry/$image:$tag"
    docker push "$registry/$image:$tag"
done
echo "pushed $registry/$image:{$(IFS=,; echo "${tags[*]}")}"
