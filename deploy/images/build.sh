#!/usr/bin/env bash
# Build the assay images with buildah (or podman) and check them: non-root user, the CLI runs,
# the API image has no torch.
#
#   deploy/images/build.sh                 # both images, tag 0.1.0
#   PYTHON_IMAGE=registry.example/python:3.11.7-slim-bookworm deploy/images/build.sh
#
# Where no container registry is reachable (the CI machine here reaches only the Debian and PyPI
# mirrors), the base image is made locally: a Debian bookworm root filesystem from debootstrap
# with Debian's python3 in a venv on PATH, imported as localhost/assay-python:3.11-bookworm.
# Where the container runtime may not set rlimits (crun's setrlimit is refused in unprivileged
# containers), RUN steps use buildah's chroot isolation.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${TAG:-0.1.0}
ISOLATION=${ISOLATION:-chroot}
PYTHON_IMAGE=${PYTHON_IMAGE:-docker.io/library/python:3.11.7-slim-bookworm}
LOCAL_BASE=localhost/assay-python:3.11-bookworm

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

if ! have_image "$PYTHON_IMAGE" && ! buildah pull -q "$PYTHON_IMAGE" >/dev/null 2>&1; then
  echo "build.sh: cannot pull $PYTHON_IMAGE (no registry reachable); using a local Debian base" >&2
  if ! have_image "$LOCAL_BASE"; then
    command -v debootstrap >/dev/null || { echo "build.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
    root=$(mktemp -d /tmp/assay-rootfs.XXXX)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    chroot "$root" python3 -m venv /opt/python
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | buildah import --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' - "$LOCAL_BASE" >/dev/null 2>&1 || \
      tar -C "$root" -c . | podman import --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$LOCAL_BASE" >/dev/null
  fi
  PYTHON_IMAGE=$LOCAL_BASE
fi

for img in worker api; do
  echo "build.sh: building assay-$img:$TAG from $PYTHON_IMAGE" >&2
  ca=()
  [ -f /etc/ssl/certs/ca-certificates.crt ] && ca=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  buildah bud --isolation="$ISOLATION" --layers --force-rm "${ca[@]}" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
    -f deploy/images/Containerfile.$img -t "localhost/assay-$img:$TAG" .
  user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "localhost/assay-$img:$TAG")
  [ "$user" = "10001:10001" ] || { echo "build.sh: assay-$img runs as '$user', not 10001" >&2; exit 1; }
  c=$(buildah from "localhost/assay-$img:$TAG")
  buildah run --isolation="$ISOLATION" "$c" -- sh -c 'id -u; assay --version'
  if [ "$img" = api ]; then
    buildah run --isolation="$ISOLATION" "$c" -- python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
  else
    buildah run --isolation="$ISOLATION" "$c" -- python -c "import ray, pyarrow.fs; print('ray', ray.__version__)"
  fi
  buildah rm "$c" >/dev/null
done

# PostgreSQL for compose: the official image where a registry answers, else one from Debian's
# postgresql-15 package on the same base (compose takes it as ASSAY_POSTGRES_IMAGE)
POSTGRES_IMAGE=${POSTGRES_IMAGE:-docker.io/library/postgres:15.10-bookworm}
if ! have_image "$POSTGRES_IMAGE" && ! buildah pull -q "$POSTGRES_IMAGE" >/dev/null 2>&1; then
  echo "build.sh: cannot pull $POSTGRES_IMAGE; building localhost/assay-postgres:15 from Debian's postgresql-15" >&2
  buildah bud --isolation="$ISOLATION" --layers --force-rm "${ca[@]}" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
    -f deploy/images/Containerfile.postgres -t localhost/assay-postgres:15 .
  c=$(buildah from localhost/assay-postgres:15)
  buildah run --isolation="$ISOLATION" --user postgres "$c" -- postgres --version
  buildah rm "$c" >/dev/null
  echo "build.sh: compose with ASSAY_POSTGRES_IMAGE=localhost/assay-postgres:15" >&2
fi
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'assay-(worker|api|postgres)'
