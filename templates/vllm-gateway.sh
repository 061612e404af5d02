#!/bin/sh
# Managed by vllm-fleet. Takes vLLM hosts out of the gateway's rotation and puts them back,
# through HAProxy's runtime API.
# Usage: vllm-gateway drain TIMEOUT SERVER...   no new requests; waits for those in flight (at most TIMEOUT s)
#        vllm-gateway ready TIMEOUT SERVER...   back in rotation; waits until health checks see it UP
#        vllm-gateway restore TIMEOUT SERVER... back in rotation, left to the health checks (a host down now)
set -u
action=$1 timeout=$2
shift 2
socket=/run/haproxy/admin.sock
api() { echo "$1" | socat stdio "unix-connect:$socket"; }
# show stat is CSV: field 2 the server, 3 its queue, 5 its sessions, 18 its status.
field() { api "show stat" | awk -F, -v server="$1" -v f="$2" '$1 == "vllm" && $2 == server { print $f }'; }

deadline=$(( $(date +%s) + timeout ))
status=0
for server in "$@"; do
    if [ -z "$(field "$server" 18)" ]; then
        echo "gateway $(hostname): no server $server in backend vllm" >&2
        exit 2
    fi
    case "$action" in
    drain)
        api "set server vllm/$server state drain" >/dev/null
        while [ "$(field "$server" 5)" != 0 ] || [ "$(field "$server" 3)" != 0 ]; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                echo "gateway $(hostname): $server still has requests in flight after ${timeout}s; going on" >&2
                break
            fi
            sleep 0.5
        done
        echo "gateway $(hostname): $server drained" ;;
    ready)
        api "set server vllm/$server state ready" >/dev/null
        until [ "$(field "$server" 18)" = UP ]; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                echo "gateway $(hostname): $server is $(field "$server" 18) after ${timeout}s, not UP" >&2
                status=1
                continue 2
            fi
            sleep 0.5
        done
        echo "gateway $(hostname): $server is back in rotation" ;;
    restore)
        api "set server vllm/$server state ready" >/dev/null
        echo "gateway $(hostname): $server left to the health checks" ;;
    *)
        echo "usage: vllm-gateway drain|ready|restore TIMEOUT SERVER..." >&2
        exit 2 ;;
    esac
done
exit "$status"
