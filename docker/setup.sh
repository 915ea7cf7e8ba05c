#!/usr/bin/env bash
# Make the Docker tier ready on this machine, as root: an engine that answers, and the
# natlab image built from this checkout on a locally made Debian base (no registry).
#   bash docker/setup.sh
# Starts dockerd only if no engine answers (service docker start, else dockerd in the
# background, its log in ${TMPDIR:-/tmp}/natlab-dockerd.log) and leaves it running.
# Exit 3: no engine could be started (the docker tests then skip, saying why).
# NATLAB_BASE_IMAGE=python:3.11-slim-bookworm uses a registry base instead.
set -euo pipefail
cd "$(dirname "$0")/.."

engine_up() { docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }
wait_engine() {
  for _ in $(seq 1 60); do engine_up && return 0; sleep 0.5; done
  return 1
}

if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
  echo "docker/setup.sh: docker is not installed (bash install.sh --docker)" >&2
  exit 3
fi
if ! engine_up; then
  echo "docker/setup.sh: starting the Docker engine"
  if ! { service docker start >/dev/null 2>&1 && wait_engine; }; then
    log="${TMPDIR:-/tmp}/natlab-dockerd.log"
    nohup dockerd >"$log" 2>&1 &
    if ! wait_engine; then
      echo "docker/setup.sh: dockerd did not start (see $log):" >&2
      tail -n 5 "$log" >&2 || true
      exit 3
    fi
  fi
fi
echo "docker/setup.sh: engine up (API $(docker version --format '{{.Server.APIVersion}}'))"

base="${NATLAB_BASE_IMAGE:-natlab-base:local}"
if [ "$base" = natlab-base:local ]; then
  bash docker/make-local-base.sh "$base"
fi
bash docker/build-image.sh --base "$base"
