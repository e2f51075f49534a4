#!/bin/sh
# The three-tier example (README.md): database, cache and web containers made
# from Debian packages, on one network; the web container answers on a
# published port with what it fetched from the other two by name.
#
#   ./run.sh            on a pinnace network, web published on 127.0.0.1:$PORT
#   ./run.sh --netns    without pinnace networks: --network host inside a network
#                       namespace made for the run, web told to find the others
#                       at 127.0.0.1
#
# Environment: PORT (8080), NET (threetier), REGISTRY (host:port of a registry
# to push to; default: a throwaway docker-registry on 127.0.0.1), PYTHON
# (python3, with pinnace's test extra: the builder uses tests/registry.py),
# READY_WITHIN (60 seconds). Run as root. Everything it starts is removed on exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
builder="$here/../../tests/three_tier.py"
PYTHON=${PYTHON:-python3}
PORT=${PORT:-8080}
NET=${NET:-threetier}

case "${1:-}" in
    "") mode=network ;;
    --netns) mode=netns ;;
    *) echo "usage: $0 [--netns]" >&2; exit 2 ;;
esac

work=$(mktemp -d /var/tmp/three-tier.XXXXXX)
registry_pid= ns=
cleanup() {
    status=$?
    trap - EXIT INT TERM
    echo "cleaning up" >&2
    pinnace rm -f web cache db >/dev/null 2>&1 || true
    if [ "$mode" = network ]; then pinnace network rm "$NET" >/dev/null 2>&1 || true; fi
    if [ -n "$ns" ]; then ip netns del "$ns" || true; fi
    if [ -n "$registry_pid" ]; then kill "$registry_pid" || true; fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for TIER COMMAND...: run COMMAND until it succeeds; give up, showing the
# tier's logs, when its container stops or READY_WITHIN seconds have passed
wait_for() {
    tier=$1
    shift
    deadline=$(($(date +%s) + ${READY_WITHIN:-60}))
    until out=$("$@" 2>&1); do
        state=$(pinnace inspect -f '{{.State.Status}}' "$tier" 2>&1 || true)
        if [ "$state" != running ] || [ "$(date +%s)" -ge "$deadline" ]; then
            echo "the $tier tier never got ready (container: $state); its last check said:" >&2
            printf '%s\n' "$out" >&2
            echo "pinnace logs $tier:" >&2
            pinnace logs "$tier" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    echo "$tier: ready" >&2
}

# 1. the images: built from this host's Debian packages (cached), pushed, pulled
if [ -z "${REGISTRY:-}" ]; then
    started=$("$PYTHON" "$builder" registry "$work/registry")
    REGISTRY=${started% *} registry_pid=${started#* }
fi
refs=$("$PYTHON" "$builder" push "$REGISTRY")
eval "$refs" # DB_IMAGE, CACHE_IMAGE, WEB_IMAGE
for image in "$DB_IMAGE" "$CACHE_IMAGE" "$WEB_IMAGE"; do
    pinnace pull -q "$image"
done

# 2. the containers
if [ "$mode" = network ]; then
    in=
    pinnace network create "$NET"
    pinnace run -d --name db --network "$NET" "$DB_IMAGE"
    pinnace run -d --name cache --network "$NET" "$CACHE_IMAGE"
    pinnace run -d --name web --network "$NET" -p "127.0.0.1:$PORT:80" "$WEB_IMAGE"
    url=http://127.0.0.1:$PORT/
else
    ns=three-tier-$$
    ip netns add "$ns"
    # nsenter, not ip netns exec (which hides /sys/fs/cgroup from pinnace)
    in="nsenter --net=/run/netns/$ns"
    $in ip link set lo up
    $in pinnace run -d --name db --network host "$DB_IMAGE"
    $in pinnace run -d --name cache --network host "$CACHE_IMAGE"
    $in pinnace run -d --name web --network host -e DB_HOST=127.0.0.1 -e CACHE_HOST=127.0.0.1 "$WEB_IMAGE"
    url=http://127.0.0.1:80/
fi

# GET $url: the page, and success only for 200
get() {
    code=$($in curl -sS -m 5 -o "$work/page" -w '%{http_code}' "$url") || return 1
    cat "$work/page"
    [ "$code" = 200 ]
}

# 3. ready, in order: each image carries a `ready` check; the web tier is ready
#    when GET / answers 200, which it does once it got answers from both others
wait_for db pinnace exec db ready
wait_for cache pinnace exec cache ready
wait_for web get

# 4. the page
get
