#!/bin/sh
# Managed by vllm-fleet. Makes LINK point at the vLLM server built from a flake, either
# by building it here or by copying the build from a builder host, then records the
# flake's hash in STAMP. LINK and STAMP change only once the new build is complete, so
# a failure leaves the host on its last good build.
# Usage: vllm-nix-install build HOST_LABEL FLAKE_DIR ATTRIBUTE LINK STAMP HASH TIMEOUT
#        vllm-nix-install copy  HOST_LABEL BUILDER LINK STAMP HASH TIMEOUT
set -u
# sudo's secure_path lacks the official installer's profile: nix is found there too.
PATH="/nix/var/nix/profiles/default/bin:$PATH"
mode=$1 label=$2
shift 2
nix="nix --extra-experimental-features nix-command --extra-experimental-features flakes"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

explain() {
    echo "$1 on $label failed. Last lines:" >&2
    tail -n 15 "$log" >&2
    if grep -qiE "unable to download|could not resolve|couldn't resolve|timed out|connection refused|network is unreachable" "$log"; then
        echo "$label cannot reach what the build fetches (nixpkgs and the binary caches in nix_substituters):" \
             "connect it, point nix_substituters at a mirror it can reach, or build elsewhere with nix_builder." >&2
    fi
    exit 1
}

if [ "$mode" = build ]; then
    flake=$1 attribute=$2 link=$3 stamp=$4 hash=$5 timeout=$6
    timeout "$timeout" $nix build --out-link "$link" "path:$flake#$attribute" >"$log" 2>&1 \
        || explain "nix build of $attribute"
else
    builder=$1 link=$2 stamp=$3 hash=$4 timeout=$5
    ssh="ssh -o BatchMode=yes -o ConnectTimeout=10 root@$builder"
    built=$($ssh cat "$stamp" 2>>"$log") || explain "reading the build on $builder"
    [ "$built" = "$hash" ] || { echo "the build of this flake on $builder is out of date (its hash: ${built:-none})" >>"$log"; explain "taking the build from $builder"; }
    path=$($ssh readlink "$link" 2>>"$log") || explain "reading the build on $builder"
    # Nix's official installer puts nix-daemon in a profile that a non-interactive SSH session
    # has not on its PATH; Debian's package puts it in /usr/bin.
    daemon=$($ssh 'command -v nix-daemon || echo /nix/var/nix/profiles/default/bin/nix-daemon' 2>>"$log") \
        || explain "reading the build on $builder"
    # The builder signs nothing: the SSH connection to it (host key checked) vouches for the paths.
    NIX_SSHOPTS="-o BatchMode=yes -o ConnectTimeout=10" timeout "$timeout" \
        $nix copy --no-check-sigs --from "ssh-ng://root@$builder?remote-program=$daemon" "$path" >"$log" 2>&1 \
        || explain "nix copy from $builder"
    nix-store --realise "$path" --add-root "$link" --indirect >>"$log" 2>&1 || explain "registering $path"
fi
echo "$hash" > "$stamp.new" && mv -f "$stamp.new" "$stamp"
echo "vLLM server on $label: $(readlink "$link")"
