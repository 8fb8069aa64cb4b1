#!/usr/bin/env bash
# Build the real peers used by the end-to-end tests (tests/e2e) into .peers/bin/ (git-ignored).
#
# Pinned versions (change them here, and in docker-compose.yml for the matching images):
#   OpenTelemetry Collector  built with go.opentelemetry.io/collector/cmd/builder (ocb) v0.161.0
#                            from peers/otelcol-builder.yaml (core v0.161.0 / v1.67.0, contrib v0.161.0)
#                            -> .peers/bin/otelcol-chronograph
#                            The proxy serves contrib loadbalancingexporter only at v0.157.0-v0.161.0 and
#                            prometheusexporter not at v0.160.0; v0.161.0 is the newest release with all.
#                            Transitive modules the proxy does not serve are raised in OTELCOL_EXTRA_REQUIRES.
#   telemetrygen             github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen
#                            v0.161.0 (the load generator of the benchmarks) -> .peers/bin/telemetrygen
#   Jaeger v2                github.com/jaegertracing/jaeger v1.76.0 (the Go module tag of Jaeger v2.13.0),
#                            package ./cmd/jaeger -> .peers/bin/jaeger
#   stripe-mock              github.com/stripe/stripe-mock v0.203.0 -> .peers/bin/stripe-mock
#   Prometheus               Debian's `prometheus` package (bookworm: 2.42.0), on PATH as `prometheus`
#                            (with `promtool`); Debian's `chromium` and `tmux` for browser and terminal tests
#
# Everything Go comes from the Go module proxy. Built binaries are also kept in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/otel-chronograph/peers/<version-key>/
# so that a fresh clone on the same machine (CI) copies them instead of rebuilding; the key holds
# the version (and, for the Collector, a hash of the manifest and the extra requires).
# A binary already in .peers/bin/ with a matching version stamp is reused as it is.
# The Go builds run in parallel (each one's output prefixed with its name): downloads of one
# overlap with compiling another. Measured from empty Go module/build caches on 2 cores shared with
# other work (load 6-13): 1081 s in parallel, 1347 s one after the other (Jaeger is the longest);
# with the peers cache filled: 0.8 s for a fresh checkout, 0.3 s when .peers/bin is current.
#
# Usage: scripts/build-peers.sh            build/reuse everything
#        PEERS_FORCE=1 scripts/build-peers.sh   ignore .peers/bin and the cache, rebuild
#        PEERS_PARALLEL=0 ...               build one peer after the other
#        PEERS_SKIP_APT=1 ...               do not apt-get install prometheus, chromium, tmux
# Exit status is non-zero, with a message naming the peer, if any peer cannot be provided.
set -euo pipefail

# The PEERS_*_VERSION variables exist to try another version; the pins are the defaults here.
OCB_VERSION="${PEERS_OCB_VERSION:-v0.161.0}"
CONTRIB_MODULE="github.com/open-telemetry/opentelemetry-collector-contrib"
TELEMETRYGEN_VERSION="${PEERS_TELEMETRYGEN_VERSION:-$OCB_VERSION}"
JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_VERSION="${PEERS_JAEGER_VERSION:-v1.76.0}"          # = Jaeger v2.13.0
STRIPE_MOCK_MODULE="github.com/stripe/stripe-mock"
STRIPE_MOCK_VERSION="${PEERS_STRIPE_MOCK_VERSION:-v0.203.0}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MANIFEST="$ROOT/peers/otelcol-builder.yaml"
BIN="$ROOT/.peers/bin"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/otel-chronograph/peers"
FORCE="${PEERS_FORCE:-0}"
PARALLEL="${PEERS_PARALLEL:-1}"

log() { printf '[build-peers %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[build-peers] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed (needed to build the Collector, telemetrygen, Jaeger and stripe-mock)"
[ -f "$MANIFEST" ] || die "missing Collector builder manifest: $MANIFEST"

# Never let Go download a different toolchain; use the proxy for modules.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

GOOS_ARCH="$(go env GOOS)-$(go env GOARCH)"
sha12() { sha256sum | cut -c1-12; }   # of stdin

mkdir -p "$BIN" "$CACHE_ROOT"
START_ALL=$SECONDS

# provide NAME KEY BUILD_FUNCTION
#   Reuses $BIN/NAME when its stamp equals KEY, else copies from $CACHE_ROOT/KEY/NAME,
#   else runs BUILD_FUNCTION OUTPUT_PATH and stores the result in both places.
provide() {
    local name="$1" key="$2" build="$3"
    local target="$BIN/$name" stamp="$BIN/.$name.version" cached="$CACHE_ROOT/$key/$name"
    if [ "$FORCE" != 1 ] && [ -x "$target" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$key" ]; then
        log "$name: reusing $target ($key)"
        return 0
    fi
    if [ "$FORCE" != 1 ] && [ -x "$cached" ]; then
        log "$name: copying from cache $cached"
        cp -f "$cached" "$target.tmp" && mv -f "$target.tmp" "$target"
        echo "$key" > "$stamp"
        return 0
    fi
    local t0=$SECONDS tmpout
    tmpout="$(mktemp -d)"
    log "$name: building ($key) ..."
    if ! "$build" "$tmpout/$name"; then
        rm -rf "$tmpout"
        die "$name: build failed ($key); see the output above"
    fi
    [ -x "$tmpout/$name" ] || { rm -rf "$tmpout"; die "$name: build produced no binary"; }
    mkdir -p "$CACHE_ROOT/$key"
    cp -f "$tmpout/$name" "$cached.tmp" && mv -f "$cached.tmp" "$cached"
    cp -f "$tmpout/$name" "$target.tmp" && mv -f "$target.tmp" "$target"
    echo "$key" > "$stamp"
    rm -rf "$tmpout"
    log "$name: built in $((SECONDS - t0))s -> $target (cached in $CACHE_ROOT/$key)"
}

# --- (a) OpenTelemetry Collector via ocb ---------------------------------------------------------
# ocb generates the Collector's sources (main.go, components.go) from the manifest. Its own module
# step (`go mod tidy` + `go mod download`) also fetches modules that only the components' *tests*
# import, and the Go module proxy reachable here does not serve all of those (e.g.
# otlpencodingextension -> 403 since v0.155.0). So ocb runs with --skip-get-modules --skip-compilation,
# and this script writes the go.mod that ocb's template would (every gomod of the manifest plus
# otelcol/service at the core version) and compiles with `go build -mod=mod`, which resolves only
# what the binary imports.
OTELCOL_CORE_VERSION="$OCB_VERSION"
# Transitive modules raised above what the components require, because the proxy answers 403 for
# the required version ("module version" lines; Go's minimal version selection takes the higher one).
OTELCOL_EXTRA_REQUIRES=(
    # loadbalancingexporter v0.161.0 (its aws_cloud_map resolver) requires v1.48.0: 403.
    "github.com/aws/aws-sdk-go-v2/service/servicediscovery v1.49.0"
)
build_otelcol() {
    local out="$1" work ocb_bin
    work="$(mktemp -d)"
    ocb_bin="$CACHE_ROOT/ocb-$OCB_VERSION-$GOOS_ARCH/builder"
    if [ ! -x "$ocb_bin" ]; then
        log "otelcol: installing the builder go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
        mkdir -p "$(dirname "$ocb_bin")"
        GOBIN="$(dirname "$ocb_bin")" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION" \
            || { rm -rf "$work"; return 1; }
    fi
    # Same manifest, but with the output path pointing into the temporary work directory.
    sed "s#^\(\s*output_path:\).*#\1 $work/dist#" "$MANIFEST" > "$work/manifest.yaml"
    log "otelcol: generating sources with ocb"
    (cd "$work" && "$ocb_bin" --config "$work/manifest.yaml" --skip-get-modules --skip-compilation) \
        || { rm -rf "$work"; return 1; }
    # (errexit does not apply inside a function called from `if !`, hence the explicit checks)
    (
        cd "$work/dist" || exit 1
        go mod init go.opentelemetry.io/collector/cmd/otelcol-chronograph >/dev/null 2>&1 || exit 1
        grep -E '^\s*- gomod:' "$MANIFEST" | sed -E 's/^\s*- gomod:\s*//; s/\s+#.*$//' > "$work/gomods.txt"
        [ -s "$work/gomods.txt" ] || { log "otelcol: no gomod entries in $MANIFEST"; exit 1; }
        while read -r mod ver; do
            go mod edit -require="$mod@$ver" || exit 1
        done < "$work/gomods.txt"
        go mod edit -require="go.opentelemetry.io/collector/otelcol@$OTELCOL_CORE_VERSION" \
                    -require="go.opentelemetry.io/collector/service@$OTELCOL_CORE_VERSION" || exit 1
        for req in "${OTELCOL_EXTRA_REQUIRES[@]}"; do
            go mod edit -require="${req% *}@${req#* }" || exit 1
        done
        log "otelcol: go build (downloads modules and compiles; this is the slow part)"
        go build -mod=mod -trimpath -ldflags "-s -w" -o "$out" . || exit 1
    ) || { rm -rf "$work"; return 1; }
    rm -rf "$work"
    "$out" --version >/dev/null || return 1
}

# --- (b) telemetrygen (the load generator) ----------------------------------------------------------
# Its module has no replace directives, so `go install pkg@version` builds it with its own go.mod.
build_telemetrygen() {
    local out="$1" gobin
    gobin="$(mktemp -d)"
    GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$CONTRIB_MODULE/cmd/telemetrygen@$TELEMETRYGEN_VERSION" \
        || { rm -rf "$gobin"; return 1; }
    mv "$gobin/telemetrygen" "$out" && rm -rf "$gobin"
    "$out" traces --help >/dev/null || return 1
}

# --- (c) Jaeger v2 ---------------------------------------------------------------------------------
build_jaeger() {
    local out="$1" dir
    # The Jaeger module has replace directives, so `go install pkg@version` refuses it:
    # download the pinned module from the proxy and build ./cmd/jaeger inside it.
    dir="$(go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')"
    [ -n "$dir" ] && [ -d "$dir" ] || { log "jaeger: go mod download failed"; return 1; }
    (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out" ./cmd/jaeger) || return 1
    "$out" version >/dev/null 2>&1 || "$out" --help >/dev/null 2>&1 || return 1
}

# --- (d) stripe-mock -------------------------------------------------------------------------------
build_stripe_mock() {
    local out="$1" gobin
    gobin="$(mktemp -d)"
    GOBIN="$gobin" go install -trimpath "$STRIPE_MOCK_MODULE@$STRIPE_MOCK_VERSION" || { rm -rf "$gobin"; return 1; }
    mv "$gobin/stripe-mock" "$out" && rm -rf "$gobin"
}

# --- build or reuse every Go peer ------------------------------------------------------------------
OTELCOL_KEY="otelcol-${OCB_VERSION}-$({ cat "$MANIFEST"; printf '%s\n' "${OTELCOL_EXTRA_REQUIRES[@]}"; } | sha12)"
GO_PEERS=(
    "otelcol-chronograph $OTELCOL_KEY-$GOOS_ARCH build_otelcol"
    "telemetrygen telemetrygen-${TELEMETRYGEN_VERSION}-$GOOS_ARCH build_telemetrygen"
    "jaeger jaeger-${JAEGER_VERSION}-$GOOS_ARCH build_jaeger"
    "stripe-mock stripe-mock-${STRIPE_MOCK_VERSION}-$GOOS_ARCH build_stripe_mock"
)
FAILED=()
if [ "$PARALLEL" = 1 ]; then
    PIDS=()
    for spec in "${GO_PEERS[@]}"; do
        read -r name key build <<< "$spec"
        # Each peer in its own subshell, its output prefixed with its name; the pipeline's status is
        # provide's (pipefail), so a failed build is reported below by name.
        ( provide "$name" "$key" "$build" 2>&1 | sed -u "s/^/[$name] /" >&2 ) &
        PIDS+=("$!")
    done
    for i in "${!GO_PEERS[@]}"; do
        wait "${PIDS[$i]}" || FAILED+=("${GO_PEERS[$i]%% *}")
    done
else
    for spec in "${GO_PEERS[@]}"; do
        read -r name key build <<< "$spec"
        ( provide "$name" "$key" "$build" ) || FAILED+=("$name")
    done
fi
[ "${#FAILED[@]}" = 0 ] || die "could not provide: ${FAILED[*]} (see the lines above prefixed with the name)"

# --- (e) Debian packages: Prometheus (+ promtool), Chromium (the insights report in a real browser), tmux
declare -A APT_FOR=([prometheus]=prometheus [promtool]=prometheus [chromium]=chromium [tmux]=tmux)
MISSING=()
for cmd in prometheus promtool chromium tmux; do
    if command -v "$cmd" >/dev/null 2>&1; then
        log "$cmd: found $(command -v "$cmd")"
    else
        pkg=${APT_FOR[$cmd]}
        [[ " ${MISSING[*]} " == *" $pkg "* ]] || MISSING+=("$pkg")
    fi
done
if [ "${#MISSING[@]}" != 0 ]; then
    [ "${PEERS_SKIP_APT:-0}" = 1 ] && die "not on PATH and PEERS_SKIP_APT=1: install Debian's ${MISSING[*]}"
    command -v apt-get >/dev/null 2>&1 || die "${MISSING[*]}: not on PATH and apt-get is unavailable"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    log "apt-get install ${MISSING[*]} (without starting any service)"
    # Keep the packages' services from starting (Prometheus would bind :9090): the tests start their
    # own on free ports. policy-rc.d exit 101 = "action forbidden".
    POLICY=/usr/sbin/policy-rc.d
    ADDED_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY" && ADDED_POLICY=1
    fi
    rc=0
    { $SUDO apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}"; } || rc=$?
    [ "$ADDED_POLICY" = 1 ] && $SUDO rm -f "$POLICY"
    [ "$rc" = 0 ] || die "apt-get install ${MISSING[*]} failed (exit $rc)"
    for cmd in prometheus promtool chromium tmux; do
        command -v "$cmd" >/dev/null 2>&1 || die "$cmd: installed, but not on PATH"
    done
fi
prometheus --version 2>&1 | head -n1 | sed 's/^/[build-peers] /' >&2

log "all peers ready in $((SECONDS - START_ALL))s:"
for b in otelcol-chronograph telemetrygen jaeger stripe-mock; do
    log "  $BIN/$b"
done
log "  $(command -v prometheus)"
