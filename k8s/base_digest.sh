#!/usr/bin/env bash
# The digest a registry serves for an image tag, to pin k8s/Dockerfile's BASE_DIGEST:
#   k8s/base_digest.sh rayproject/ray:2.60.0-py311                 # prints sha256:...
#   k8s/base_digest.sh rayproject/ray:2.60.0-py311 sha256:abc...   # exit 1 unless it matches
# A mismatch means the tag was re-pushed since the digest was recorded: review the new image
# before moving the pin. Uses whichever of docker buildx, crane or skopeo is installed.
set -euo pipefail
image=${1:?usage: k8s/base_digest.sh IMAGE:TAG [EXPECTED_DIGEST]}
expected=${2:-}
if command -v docker > /dev/null && docker buildx version > /dev/null 2>&1; then
  digest=$(docker buildx imagetools inspect "$image" --format '{{json .Manifest.Digest}}' | tr -d '"')
elif command -v crane > /dev/null; then
  digest=$(crane digest "$image")
elif command -v skopeo > /dev/null; then
  digest=$(skopeo inspect --format '{{.Digest}}' "docker://$image")
else
  echo "k8s/base_digest.sh: needs docker buildx, crane or skopeo" >&2
  exit 2
fi
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "unexpected digest '$digest' for $image" >&2; exit 2; }
if [[ -n $expected && $digest != "$expected" ]]; then
  echo "$image is now $digest, not the pinned $expected" >&2
  exit 1
fi
echo "$digest"
