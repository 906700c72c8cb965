#!/usr/bin/env bash
# A Debian bookworm base image with Python, built without any image registry:
# debootstrap (from Debian's package mirror) + `docker import`. Prints the tag.
# Cached by tag: made once per machine, and again when RECIPE is bumped (do so
# whenever the packages or the steps below change).
#   BASE_IMAGE=$(scripts/base-image.sh)
#   docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" .
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates
RECIPE=2
TAG=${STOX_BASE_TAG:-stox-base:bookworm-r$RECIPE}

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "base-image: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /tmp/stox-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "base-image: debootstrap bookworm into $root" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >&2

# The certificate authorities this machine trusts beyond Debian's (a TLS-inspecting egress
# proxy, a company CA), so that pip inside a build reaches PyPI as the host does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root"/usr/local/share/ca-certificates/
  chroot "$root" update-ca-certificates >&2
fi

# What a container never needs: package lists, caches, manuals, translations.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/tmp/*
echo "deb $MIRROR bookworm main" > "$root"/etc/apt/sources.list

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >&2
echo "$TAG"
