#!/usr/bin/env bash
# Writes .env beside compose.yaml once (mode 600): the PostgreSQL password and the Ray cluster's
# auth token (Ray 2.60 token auth: every node and every driver must present the same token).
set -euo pipefail
cd "$(dirname "$0")"
umask 077
if [ ! -s .env ]; then
  {
    echo "ASSAY_PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
    echo "ASSAY_RAY_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
    echo "COMPOSE_PROJECT_NAME=assay"
    echo "ASSAY_DATA_DIR=${ASSAY_DATA_DIR:-/srv/assay/data}"
  } > .env
fi
echo "secrets in $(pwd)/.env (keep it out of git)"
