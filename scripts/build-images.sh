#!/usr/bin/env bash
# Builds Sluice's container images locally, FROM scratch, with nothing pulled from a registry:
#
#   sluice-proxy     `sluice proxy`     (stands in for vfarcic/docker-flow-proxy)
#   sluice-listener  `sluice listener`  (stands in for vfarcic/docker-flow-swarm-listener)
#   sluice-demo      `sluice-demo http` (stands in for vfarcic/go-demo; `tcp` for mongo/redis)
#
# Each image holds the binary (debug symbols stripped), the shared libraries `ldd` lists for it
# at their own paths (including the dynamic loader), and a minimal /etc/nsswitch.conf.
#
#   scripts/build-images.sh [--release | --debug] [--no-build]
#
#   --release     build and package the release profile (the default: what you deploy)
#   --debug       build and package the debug profile instead (faster to build, larger
#                 image; the end-to-end suite uses it unless E2E_RELEASE=1)
#   --no-build    package the binaries already in target/<profile> (no cargo call)
#
# Environment: SLUICE_IMAGE_TAG [latest] the tag given to the three images;
#              CARGO_TARGET_DIR [target] where cargo puts the binaries.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${SLUICE_IMAGE_TAG:-latest}
PROFILE=release
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --release) PROFILE=release ;;
        --debug) PROFILE=debug ;;
        --no-build) BUILD=0 ;;
        -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=$TARGET_DIR/$PROFILE
STAGE=$TARGET_DIR/images
log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is dockerd running?)"
command -v ldd >/dev/null || die "ldd is missing (package libc-bin)"

if [[ $BUILD == 1 ]]; then
    started=$(date +%s)
    cargo_flags=(-p sluice -p sluice-demo)
    if [[ $PROFILE == release ]]; then cargo_flags+=(--release); fi
    log "cargo build ${cargo_flags[*]}"
    (cd "$ROOT" && cargo build "${cargo_flags[@]}")
    log "cargo build took $(($(date +%s) - started))s"
fi
for bin in sluice sluice-demo; do
    [[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin is missing (run without --no-build)"
done

# Copies one file to the same path under the root filesystem $1, following symlinks.
copy_into() {
    local rootfs=$1 file=$2
    mkdir -p "$rootfs$(dirname "$file")"
    cp -L "$file" "$rootfs$file"
}

# Copies every shared library (and the loader) that `ldd` lists for the ELF file $2.
copy_libraries() {
    local rootfs=$1 elf=$2 line path
    while IFS= read -r line; do
        path=""
        if [[ $line =~ =\>\ (/[^ ]+) ]]; then
            path=${BASH_REMATCH[1]}
        elif [[ $line =~ ^[[:space:]]*(/[^ ]+)\ \( ]]; then
            path=${BASH_REMATCH[1]} # the dynamic loader
        elif [[ $line == *"not found"* ]]; then
            die "$elf needs a library that is not installed: $line"
        fi
        if [[ -n $path && ! -e $rootfs$path ]]; then
            copy_into "$rootfs" "$path"
        fi
    done < <(ldd "$elf" 2>/dev/null || true)
    return 0
}

# Stages the root filesystem of an image holding binary $2 into directory $1.
stage_rootfs() {
    local rootfs=$1/rootfs bin=$2 libc_dir nss
    rm -rf "$1"
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/lib/sluice"
    chmod 1777 "$rootfs/tmp"
    if command -v objcopy >/dev/null; then
        objcopy --strip-debug "$BIN_DIR/$bin" "$rootfs/usr/local/bin/$bin"
    else
        cp "$BIN_DIR/$bin" "$rootfs/usr/local/bin/$bin"
    fi
    if ldd "$BIN_DIR/$bin" 2>&1 | grep -qE 'not a dynamic executable|statically linked'; then
        log "$bin is static: no libraries to copy"
    else
        copy_libraries "$rootfs" "$BIN_DIR/$bin"
        # Older glibc (< 2.34) loads the `files` and `dns` host lookups from modules; newer
        # ones have them built in. Copy them (and what they need) when they exist.
        libc_dir=$(ldd "$BIN_DIR/$bin" | sed -n 's/.*libc\.so\.6 => \(\/[^ ]*\)\/libc\.so\.6.*/\1/p' | head -n1)
        for nss in libnss_files.so.2 libnss_dns.so.2; do
            if [[ -n $libc_dir && -e $libc_dir/$nss ]]; then
                copy_into "$rootfs" "$libc_dir/$nss"
                copy_libraries "$rootfs" "$libc_dir/$nss"
            fi
        done
    fi
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    printf 'root:x:0:0:root:/:/usr/local/bin/%s\n' "$bin" >"$rootfs/etc/passwd"
    printf 'root:x:0:\n' >"$rootfs/etc/group"
}

# Without the buildx plugin, the Docker CLI must be told to use the classic builder.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

build_image() {
    local image=$1 dockerfile=$2 context=$3 previous
    previous=$(docker image inspect --format '{{.Id}}' "$image:$TAG" 2>/dev/null || true)
    cp "$ROOT/docker/$dockerfile" "$context/Dockerfile"
    log "docker build $image:$TAG ($(du -sh "$context/rootfs" | cut -f1) root filesystem)"
    docker build --quiet --tag "$image:$TAG" "$context" >/dev/null 2>"$context/build.log" ||
        { cat "$context/build.log" >&2; die "docker build of $image failed"; }
    # The image this tag named before is garbage now (unless a container still uses it).
    if [[ -n $previous && $previous != "$(docker image inspect --format '{{.Id}}' "$image:$TAG")" ]]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
}

started=$(date +%s)
stage_rootfs "$STAGE/sluice" sluice
stage_rootfs "$STAGE/sluice-demo" sluice-demo
build_image sluice-proxy proxy.Dockerfile "$STAGE/sluice"
build_image sluice-listener listener.Dockerfile "$STAGE/sluice"
build_image sluice-demo demo.Dockerfile "$STAGE/sluice-demo"

# Smoke test: each image's binary starts (the loader and libraries are all there).
docker run --rm "sluice-proxy:$TAG" --version >/dev/null || die "sluice-proxy:$TAG does not start"
docker run --rm "sluice-listener:$TAG" --version >/dev/null || die "sluice-listener:$TAG does not start"
docker run --rm "sluice-demo:$TAG" --version >/dev/null || die "sluice-demo:$TAG does not start"
log "images ready in $(($(date +%s) - started))s ($PROFILE): sluice-proxy:$TAG sluice-listener:$TAG sluice-demo:$TAG"
