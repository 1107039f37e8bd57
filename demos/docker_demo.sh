#!/usr/bin/env bash
# Build the pirate_actors image and run the compose demo end to end: one client
# container and DEMO_WORKERS (default 3) worker containers, talking over CURVE with
# certificates made for this run. Exits 0 only when the client container reports that
# every call behaved as expected.
#
#   demos/docker_demo.sh
#
# Uses Docker when a Docker engine answers, podman otherwise. As root on a Debian-like
# machine it installs what is missing (podman, runc, debootstrap) and, when no
# container registry can be reached, makes a Debian base image locally with debootstrap.
# Safe to run again: the base image, the build cache and podman-compose are reused.
#
# Environment (all optional):
#   ENGINE              docker or podman (default: docker if its engine answers, else podman)
#   DEMO_WORKERS        number of worker containers (default 3)
#   BASE_IMAGE          base image for the build (default: the official python:3.11-slim,
#                       or a local debootstrap image when no registry is reachable)
#   PIRATE_ACTORS_IMAGE image tag to build and run (default pirate-actors:latest)
#   PIRATE_ACTORS_KEY   a shared key to sign messages with HMAC on top of CURVE
#                       (default: none; CURVE alone encrypts and authenticates)
#   CA_BUNDLE           CA bundle handed to pip during the build (default: the system's)
#   DEBIAN_MIRROR       mirror for debootstrap (default http://deb.debian.org/debian)
#   PODMAN_COMPOSE      podman-compose command to use (default: found or installed)
set -euo pipefail

cd "$(dirname "$0")/.."
started=$SECONDS

WORKERS=${DEMO_WORKERS:-3}
IMAGE=${PIRATE_ACTORS_IMAGE:-pirate-actors:latest}
OFFICIAL_BASE=docker.io/library/python:3.11-slim
LOCAL_BASE=localhost/pirate-actors-base:bookworm
PROJECT=pirate_actors_demo
COMPOSE_FILE=demos/compose.yaml
PODMAN_COMPOSE_VERSION=1.6.0
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/pirate_actors-docker-demo

log() { printf '[docker-demo %3ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

tmpdir=$(mktemp -d)
rootfs=
certs=
cleanup() {
    if [ -n "${compose_ready:-}" ]; then
        "${compose[@]}" down >/dev/null 2>&1 || true
    fi
    if [ -n "$certs" ] && ! rm -rf "$certs" 2>/dev/null; then
        # Made by the image's user: a host user other than root may not remove them itself.
        "$ENGINE" run --rm --network none --user 0 -v "$certs:/certs" "$IMAGE" \
            rm -rf /certs/client /certs/worker >/dev/null 2>&1 || true
    fi
    rm -rf "$tmpdir" ${rootfs:+"$rootfs"}
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- packages -------------------------------------------------------------------------
apt_updated=
apt_install() {  # apt_install PACKAGE... : install the missing ones (root + apt only)
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "please install: ${missing[*]}"
    fi
    log "installing ${missing[*]}"
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- engine ---------------------------------------------------------------------------
if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    else
        ENGINE=podman
    fi
fi

case "$ENGINE" in
docker)
    export DOCKER_BUILDKIT=1  # build secrets need BuildKit
    if docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    else
        die "Docker has no compose plugin: install docker compose"
    fi
    ;;
podman)
    # netavark (with iptables) and aardvark-dns give the compose network its DNS, so the
    # workers find "client" by name.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt_install podman runc netavark aardvark-dns iptables
    elif ! command -v podman >/dev/null 2>&1; then
        die "please install podman (and podman's netavark and aardvark-dns)"
    fi
    # Settings that podman needs on hosts with hybrid cgroups and strict resource
    # limits (runc instead of crun, limits no higher than the host's), in a file of
    # our own, unless the caller points CONTAINERS_CONF at one already.
    if [ -z "${CONTAINERS_CONF:-}" ]; then
        nofile=$(ulimit -Hn)
        [ "$nofile" = unlimited ] && nofile=1048576
        nproc=$(ulimit -Hu)
        if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
        {
            echo '[containers]'
            echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
            for helper in /usr/lib/podman/netavark /usr/libexec/podman/netavark; do
                if [ -x "$helper" ]; then
                    echo '[network]'
                    echo 'network_backend = "netavark"'
                    break
                fi
            done
            if command -v runc >/dev/null 2>&1; then
                echo '[engine]'
                echo 'runtime = "runc"'
            fi
        } >"$tmpdir/containers.conf"
        export CONTAINERS_CONF="$tmpdir/containers.conf"
    fi
    podman info >/dev/null || die "podman does not work here"
    if [ "$(podman info --format '{{.Host.NetworkBackend}}')" != netavark ]; then
        log "warning: podman's network backend is not netavark; containers may not find each other by name"
    fi
    if [ -n "${PODMAN_COMPOSE:-}" ]; then
        read -r -a compose <<<"$PODMAN_COMPOSE"
    elif command -v podman-compose >/dev/null 2>&1 &&
        podman-compose version 2>/dev/null | grep -Eq 'podman-compose version (1\.([1-9]|[1-9][0-9])|[2-9])\.'; then
        compose=(podman-compose)  # 1.1 or newer: needed for --scale
    else
        venv="$CACHE_DIR/podman-compose-$PODMAN_COMPOSE_VERSION"
        if [ ! -x "$venv/bin/podman-compose" ]; then
            log "installing podman-compose $PODMAN_COMPOSE_VERSION into $venv"
            command -v python3 >/dev/null 2>&1 || apt_install python3
            python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv"
            "$venv/bin/pip" install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION" \
                >"$tmpdir/pip.log" 2>&1 || { cat "$tmpdir/pip.log" >&2; die "could not install podman-compose"; }
        fi
        compose=("$venv/bin/podman-compose")
    fi
    ;;
*)
    die "ENGINE must be docker or podman, not '$ENGINE'"
    ;;
esac
compose+=(-p "$PROJECT" -f "$COMPOSE_FILE")
log "engine: $ENGINE ($("$ENGINE" --version)); compose: ${compose[0]}"

image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

# --- base image -----------------------------------------------------------------------
if [ -n "${BASE_IMAGE:-}" ]; then
    base=$BASE_IMAGE
elif image_exists "$OFFICIAL_BASE"; then
    base=$OFFICIAL_BASE
elif image_exists "$LOCAL_BASE"; then
    base=$LOCAL_BASE
elif timeout 300 "$ENGINE" pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
    base=$OFFICIAL_BASE
else
    log "no registry reachable: making $LOCAL_BASE with debootstrap"
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root (or set BASE_IMAGE to a Debian-based image)"
    apt_install debootstrap
    rootfs="$CACHE_DIR/rootfs"  # on disk: a tmpfs /tmp may forbid device files or exec
    rm -rf "$rootfs" && mkdir -p "$CACHE_DIR"
    debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$tmpdir/debootstrap.log" 2>&1 || { tail -20 "$tmpdir/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*  # the build updates them
    tar -C "$rootfs" -c . | "$ENGINE" import - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    base=$LOCAL_BASE
fi
log "base image: $base"

# --- build ----------------------------------------------------------------------------
build=("$ENGINE" build -t "$IMAGE" --build-arg "BASE_IMAGE=$base")
# The build only fetches packages; with podman, the host's network spares it the bridge
# (and its NAT rules, which a stale bridge of an earlier network backend can shadow).
if [ "$ENGINE" = podman ]; then build+=(--network host); fi
for ca in "${CA_BUNDLE:-}" "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" \
    /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -n "$ca" ] && [ -f "$ca" ] && [ -r "$ca" ]; then
        build+=(--secret "id=ca_bundle,src=$ca")
        break
    fi
done
log "building $IMAGE"
timeout 900 "${build[@]}" . >"$tmpdir/build.log" 2>&1 || { tail -40 "$tmpdir/build.log" >&2; die "image build failed"; }
"$ENGINE" run --rm --network none "$IMAGE" >/dev/null || die "the image's default command (pirate-worker --help) failed"
[ "$("$ENGINE" run --rm --network none "$IMAGE" id -u)" != 0 ] || die "the image runs as root"
log "built $IMAGE ($("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"

# --- CURVE certificates ---------------------------------------------------------------
# Made for this run, by pirate-keygen inside the image (the host may have no pyzmq), as
# the image's user, so that the containers can read their secret certificates (mode
# 0600); never part of the image, they reach the containers as read-only volumes.
# The folder is writable for that user only while the certificates are made; $tmpdir
# (mode 0700) keeps everyone else out of it.
certs="$tmpdir/certs"
mkdir -m 0777 "$certs"
log "making CURVE certificates for this run"
"$ENGINE" run --rm --network none -v "$certs:/certs" "$IMAGE" bash -ec '
    pirate-keygen /certs/client client >/dev/null
    pirate-keygen /certs/worker worker >/dev/null
    mkdir -m 0700 /certs/client/authorized
    cp /certs/worker/worker.key /certs/client/authorized/
    cp /certs/client/client.key /certs/worker/
' || die "could not make the CURVE certificates"
chmod 0700 "$certs"
if [ -n "${PIRATE_ACTORS_KEY:-}" ]; then
    log "PIRATE_ACTORS_KEY is set: messages are signed with HMAC as well"
fi

# --- run ------------------------------------------------------------------------------
export PIRATE_ACTORS_KEY=${PIRATE_ACTORS_KEY:-} PIRATE_ACTORS_CERTS=$certs
export PIRATE_ACTORS_IMAGE=$IMAGE DEMO_MIN_WORKERS=$WORKERS BASE_IMAGE=$base
compose_ready=1
"${compose[@]}" down >/dev/null 2>&1 || true

log "running the demo: 1 client, $WORKERS workers, over CURVE"
set +e
timeout 600 "${compose[@]}" up --no-build --scale "worker=$WORKERS" \
    --abort-on-container-exit --exit-code-from client 2>&1 | tee "$tmpdir/demo.log"
rc=${PIPESTATUS[0]}
set -e
"${compose[@]}" down >/dev/null 2>&1 || true
compose_ready=

[ "$rc" -eq 0 ] || die "the client exited with $rc"
grep -q '== demo passed' "$tmpdir/demo.log" || die "the client never reported success"
sed 's/\x1b\[[0-9;]*m//g' "$tmpdir/demo.log" | grep -E 'calls served by [0-9]+ of [0-9]+ registered' | tail -1 >&2
log "PASS: image built and compose demo passed with $WORKERS workers over CURVE"
