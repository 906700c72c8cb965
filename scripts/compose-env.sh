#!/usr/bin/env bash
# Writes .env for compose.yaml: fresh random secrets, shared by every container that needs
# them. Refuses to overwrite an existing .env (the database password lives in its volume).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -e .env ]; then
  echo "compose-env: .env exists; keep it (its passwords are in the volumes) or remove it first" >&2
  exit 1
fi
secret() { python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"; }
umask 077
cat > .env <<ENV
STOX_AUTH__JWT_SECRET=$(secret 32)
STOX_AUTH__SERVICE_TOKEN=$(secret 24)
STOX_RABBITMQ__UPDATE_SIGNING_KEY=$(secret 32)
POSTGRES_PASSWORD=$(secret 16)
RABBITMQ_PASSWORD=$(secret 16)
ENV
echo "compose-env: wrote .env"
