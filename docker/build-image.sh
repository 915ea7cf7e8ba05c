#!/usr/bin/env bash
# Build the natlab image from this checkout, honouring the host's proxies and CAs.
#   bash docker/build-image.sh [--base IMAGE] [--tag TAG]
# --base  BASE_IMAGE for the Dockerfile (default: the Dockerfile's python:3.11-slim;
#         natlab-base:local from docker/make-local-base.sh where no registry is reachable)
# --tag   image name (default: $NATLAB_IMAGE or natlab:latest, what natlab runs)
# Proxies (http_proxy, https_proxy, no_proxy, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# PIP_TRUSTED_HOST) pass through as build args; CA certificates from
# /usr/local/share/ca-certificates/*.crt (or the file NATLAB_CA_BUNDLE) are trusted by
# apt and pip in the build stage. The build uses the host's network
# (NATLAB_BUILD_NETWORK=default uses Docker's bridge instead).
set -euo pipefail
cd "$(dirname "$0")/.."
base=""
tag="${NATLAB_IMAGE:-natlab:latest}"
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "build-image: unknown argument $1 (--base IMAGE, --tag TAG)" >&2; exit 2 ;;
  esac
done

rm -f docker/certs/*.crt
if [ -n "${NATLAB_CA_BUNDLE:-}" ]; then
  cp "$NATLAB_CA_BUNDLE" docker/certs/extra-bundle.crt
elif compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt docker/certs/
fi
log="$(mktemp)"
trap 'rm -f docker/certs/*.crt "$log"' EXIT

args=(--tag "$tag" --network "${NATLAB_BUILD_NETWORK:-host}")
[ -n "$base" ] && args+=(--build-arg "BASE_IMAGE=$base")
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
           PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  [ -n "${!var:-}" ] && args+=(--build-arg "$var=${!var}")
done
echo "build-image: docker build ${base:+(base $base) }-> $tag"
previous="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
if ! docker build "${args[@]}" . >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  exit 1
fi
# Legacy builder output: "Step N/M : FROM ..." per stage, " ---> ID" after each step.
# The last ID before a later stage's FROM is the earlier stage's image.
stages="$(awk '/^Step [0-9]+\/[0-9]+ : FROM /{ if (id != "") print id } /^ ---> [0-9a-f]+$/{ id = $2 }' "$log")"
for id in $stages; do
  if [ -z "$(docker image inspect -f '{{join .RepoTags ""}}' "$id" 2>/dev/null)" ]; then
    docker image rm "$id" >/dev/null 2>&1 || true  # untagged: this build's stage only
  fi
done
docker image prune -f --filter label=natlab.build-stage >/dev/null 2>&1 || true
# The image this build replaced, if nothing else names or runs it any more.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$tag")" ] &&
   [ -z "$(docker image inspect -f '{{join .RepoTags ""}}' "$previous" 2>/dev/null)" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true  # refused while a container uses it
fi
echo "build-image: $tag built ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
