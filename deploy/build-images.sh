#!/usr/bin/env bash
# Builds the images of the Docker deployment (deploy/docker/) on a machine that reaches Debian's
# archive and PyPI but no image registry, as root (debootstrap and chroot need it). From the
# repository root:
#
#   bash deploy/build-images.sh       # prints the variables to give docker-compose, at the end
#
# 1. base:     Debian 12 with python3, python3-venv and CA certificates: Debian's minimal system
#              (debootstrap --variant=minbase, security updates applied), then `docker import`.
# 2. postgres: the same minimal system with Debian's postgresql-15, plus deploy/postgres/ (the
#              official image's POSTGRES_* variables and /docker-entrypoint-initdb.d; a UTF8 cluster).
# 3. wheels:   every dependency of '.[k8s,docker,s3]', and the project itself, as wheels built on
#              this host by its Python (the base's minor version: 3.11 on Debian 12).
# 4. image:    deploy/Dockerfile on the base, installing those wheels with `pip install --no-index`:
#              nothing is downloaded inside a container, and the image holds exactly these wheels.
#
# Images 1 and 2 are tagged with a hash of what they are built from (suite, mirrors, packages,
# this script's recipe for them, deploy/postgres/): a tag that exists is reused, so only the first
# run on a machine pays for debootstrap. Debian's later security updates come with a rebuild:
# REBUILD_BASE_IMAGES=1. Image 4 is tagged $TIKTOK_AMP_IMAGE, and with a hash of its wheels, the
# Dockerfile and the base, under which it is reused as long as none of them changed.
#
# Variables (all optional):
#   TIKTOK_AMP_IMAGE      tag of the code location's image       (tiktok-amp-assets:0.1.0)
#   PYTHON                the Python that builds the wheels        (.venv/bin/python, else python3)
#   PIP_CONSTRAINT        pip's own: pins for the wheels' versions (e.g. `pip freeze` of a tested venv)
#   DEBIAN_MIRROR         Debian's archive                         (http://deb.debian.org/debian)
#   DEBIAN_SECURITY       Debian's security archive                (http://deb.debian.org/debian-security)
#   BUILD_DIR             root file systems, wheels (kept), build context (/var/tmp/tiktok-amp-build)
#   REBUILD_BASE_IMAGES=1 build the base and postgres images even if their tags exist
# Each step prints its seconds ("phase NAME: N s").
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
BASE_PACKAGES="python3 python3-venv ca-certificates"
POSTGRES_PACKAGES="postgresql-15"
TIKTOK_AMP_IMAGE=${TIKTOK_AMP_IMAGE:-tiktok-amp-assets:0.1.0}
BUILD_DIR=${BUILD_DIR:-/var/tmp/tiktok-amp-build}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

say() { printf 'build-images: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

timed() {  # timed NAME COMMAND...: runs it, then prints "phase NAME: N s"
    local name=$1 start=$SECONDS
    shift
    "$@"
    say "phase $name: $((SECONDS - start)) s"
}

[ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap and chroot build the base images"
for tool in docker debootstrap; do
    command -v "$tool" >/dev/null || fail "$tool is missing: apt-get install -y docker.io debootstrap"
done
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer: start it (dockerd &, or systemctl start docker)"
# One build at a time in $BUILD_DIR: two checkouts building at once (two test sessions on one machine)
# would delete each other's wheels and build context. The second waits for the first, then reuses.
mkdir -p "$BUILD_DIR"
exec 9>"$BUILD_DIR/.lock"
flock 9

recipe_hash() {  # a short hash of the arguments and of this script's recipe for root file systems
    { printf '%s\n' "$@"; sed -n '/^minbase_rootfs()/,/^}/p;/^derived_rootfs()/,/^}/p' "$0"; } \
        | sha256sum | cut -c1-12
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

drop_older_builds() {  # drop_older_builds REPO:PREFIX-HASH: this script's other REPO:PREFIX-* tags
    local repository=${1%:*} tag=${1##*:} image
    for image in $(docker images --format '{{.Repository}}:{{.Tag}}' "$repository"); do
        case "$image" in
        "$1") ;;
        "$repository:${tag%-*}-"*) docker rmi "$image" >/dev/null 2>&1 || true ;;  # still in use: kept
        esac
    done
}

in_root() {  # in_root DIR COMMAND: COMMAND (sh) inside the root file system DIR, on this host's network
    local rootfs=$1 status=0
    shift
    mount -t proc proc "$rootfs/proc"
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "$*" >>"$rootfs.log" 2>&1 || status=$?
    umount "$rootfs/proc"
    [ "$status" -eq 0 ] || { tail -20 "$rootfs.log" >&2; fail "in $rootfs: '$*' failed (log: $rootfs.log)"; }
}

minbase_rootfs() {  # Debian's minimal system with its security updates: the root of both images
    local rootfs=$BUILD_DIR/minbase
    rm -rf "$rootfs" "$rootfs.log"
    mkdir -p "$rootfs" "$BUILD_DIR/apt-cache"
    debootstrap --variant=minbase --cache-dir="$BUILD_DIR/apt-cache" "$SUITE" "$rootfs" "$DEBIAN_MIRROR" \
        >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; fail "debootstrap failed (log: $rootfs.log)"; }
    printf 'deb %s %s main\n' "$DEBIAN_MIRROR" "$SUITE" "$DEBIAN_MIRROR" "$SUITE-updates" \
        "$DEBIAN_SECURITY" "$SUITE-security" >"$rootfs/etc/apt/sources.list"
    # While building only: dpkg skips its fsyncs (the images are written once, by docker import).
    echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/build-unsafe-io"
    # As Debian's own container images do: no manuals, documentation (licences kept) or
    # translations, for the packages installed from here on; and none of what debootstrap put.
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
        >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes"
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    in_root "$rootfs" 'apt-get update -qq && apt-get -y -qq upgrade'
}

derived_rootfs() {  # derived_rootfs NAME PACKAGES: a copy of the minimal system with PACKAGES
    local rootfs=$BUILD_DIR/$1
    rm -rf "$rootfs" "$rootfs.log"
    cp -a "$BUILD_DIR/minbase" "$rootfs"
    in_root "$rootfs" "apt-get -y -qq install --no-install-recommends $2"
    # Debian's postgresql package creates a cluster "main" when installed (in the C locale, so
    # SQL_ASCII): the postgres image initialises its own, UTF8, in PGDATA (deploy/postgres/).
    rm -rf "$rootfs"/etc/postgresql/*/main "$rootfs"/var/lib/postgresql/*/main
    # apt's downloads, package lists and caches (~80 MB): `apt-get update` brings them back.
    rm -rf "$rootfs/etc/dpkg/dpkg.cfg.d/build-unsafe-io" "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
}

import_rootfs() {  # import_rootfs NAME TAG
    tar --numeric-owner -C "$BUILD_DIR/$1" -c . | docker import --change 'CMD ["/bin/bash"]' - "$2" >/dev/null
    rm -rf "${BUILD_DIR:?}/$1"
}

build_base() {
    derived_rootfs base-rootfs "$BASE_PACKAGES"
    import_rootfs base-rootfs "$BASE_IMAGE"
}

build_postgres() {
    derived_rootfs postgres-rootfs "$POSTGRES_PACKAGES"
    import_rootfs postgres-rootfs "$POSTGRES_ROOTFS_IMAGE"
    docker build -q --build-arg "ROOTFS_IMAGE=$POSTGRES_ROOTFS_IMAGE" -t "$POSTGRES_IMAGE" deploy/postgres >/dev/null
    docker rmi "$POSTGRES_ROOTFS_IMAGE" >/dev/null
}

python_version() { "$@" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

build_dependency_wheels() {  # every dependency of '.[k8s,docker,s3]' as a wheel, into $DEPENDENCIES
    local host_python image_python
    host_python=$(python_version "$PYTHON")
    image_python=$(python_version docker run --rm "$BASE_IMAGE" python3)
    [ "$host_python" = "$image_python" ] \
        || fail "$PYTHON is Python $host_python, the base image's is $image_python: build the wheels with the same minor version (set PYTHON)"
    rm -rf "$DEPENDENCIES.new" "$BUILD_DIR"/dependencies-*
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$DEPENDENCIES.new" '.[k8s,docker,s3]' >"$BUILD_DIR/wheels.log" 2>&1 \
        || { tail -20 "$BUILD_DIR/wheels.log" >&2; fail "pip wheel failed (log: $BUILD_DIR/wheels.log)"; }
    rm -f "$DEPENDENCIES.new"/tiktok_amp_assets-*.whl
    mv "$DEPENDENCIES.new" "$DEPENDENCIES"
}

build_project_wheel() {  # the project's own wheel, and the build context: dependencies/ and project/
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT"
    # SOURCE_DATE_EPOCH: fixed timestamps, so the same sources make the same wheel.
    SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CONTEXT/project" . \
        >"$BUILD_DIR/wheels.log" 2>&1 \
        || { tail -20 "$BUILD_DIR/wheels.log" >&2; fail "pip wheel failed (log: $BUILD_DIR/wheels.log)"; }
    cp -al "$DEPENDENCIES" "$CONTEXT/dependencies"
}

build_image() {
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -f deploy/Dockerfile -t "$PRODUCT_SOURCE_IMAGE" \
        "$CONTEXT" >/dev/null
}

BASE_IMAGE=tiktok-amp-base:$SUITE-$(recipe_hash "$SUITE" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY" "$BASE_PACKAGES")
POSTGRES_IMAGE=tiktok-amp-postgres:15-$(recipe_hash "$SUITE" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY" \
    "$POSTGRES_PACKAGES" "$(cat deploy/postgres/Dockerfile deploy/postgres/docker-entrypoint.sh)")
POSTGRES_ROOTFS_IMAGE=${POSTGRES_IMAGE/tiktok-amp-postgres/tiktok-amp-postgres-rootfs}
# The dependencies' wheels, kept while what decides them is the same: pyproject.toml, the pins,
# the Python that builds them. A change to the project's code then builds one small wheel.
DEPENDENCIES=$BUILD_DIR/dependencies-$(
    { cat pyproject.toml; if [ -n "${PIP_CONSTRAINT:-}" ]; then cat "$PIP_CONSTRAINT"; fi; python_version "$PYTHON"; } \
        | sha256sum | cut -c1-12
)
CONTEXT=$BUILD_DIR/context

rebuild() { [ "${REBUILD_BASE_IMAGES:-}" = 1 ] || ! image_exists "$1"; }
if rebuild "$BASE_IMAGE" || rebuild "$POSTGRES_IMAGE"; then
    timed debootstrap minbase_rootfs
fi
if rebuild "$BASE_IMAGE"; then timed base build_base; else say "base: $BASE_IMAGE exists, reused"; fi
if rebuild "$POSTGRES_IMAGE"; then timed postgres build_postgres; else say "postgres: $POSTGRES_IMAGE exists, reused"; fi
rm -rf "$BUILD_DIR/minbase"
drop_older_builds "$BASE_IMAGE"
drop_older_builds "$POSTGRES_IMAGE"

# The image's inputs: the project's code and packaging, the pins given, the Dockerfile and the
# base. An image built from the same inputs is reused without building wheels again (README.md,
# the package's long description, is left out: editing it rebuilds nothing).
PRODUCT_SOURCE_IMAGE=${TIKTOK_AMP_IMAGE%:*}:src-$(
    {
        find pyproject.toml tiktok_amp_assets -type f ! -path '*/__pycache__/*' -print0 | sort -z \
            | xargs -0 sha256sum
        if [ -n "${PIP_CONSTRAINT:-}" ]; then cat "$PIP_CONSTRAINT"; fi
        cat deploy/Dockerfile
        docker image inspect -f '{{.Id}}' "$BASE_IMAGE"
    } | sha256sum | cut -c1-12
)
if image_exists "$PRODUCT_SOURCE_IMAGE"; then
    say "image: $PRODUCT_SOURCE_IMAGE exists (same code, pins, Dockerfile and base), reused"
else
    if [ ! -d "$DEPENDENCIES" ]; then timed dependency-wheels build_dependency_wheels; fi
    timed project-wheel build_project_wheel
    timed image build_image
fi
docker tag "$PRODUCT_SOURCE_IMAGE" "$TIKTOK_AMP_IMAGE"
drop_older_builds "$PRODUCT_SOURCE_IMAGE"

printf 'TIKTOK_AMP_IMAGE=%s\nPOSTGRES_IMAGE=%s\n' "$TIKTOK_AMP_IMAGE" "$POSTGRES_IMAGE"
