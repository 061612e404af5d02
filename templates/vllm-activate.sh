#!/bin/sh
# Managed by vllm-fleet. Makes a release of the vLLM service current, restarts it and waits
# for the model; when it does not come up, goes back to the release that served before.
# Usage: vllm-activate HOST_LABEL RELEASE      (RELEASE "current": restart the current one)
# Exit: 0 serving RELEASE; 3 rolled back, the earlier release serves; 1 or 4 nothing serves.
#
# The deploy runs this as a transient systemd unit, not in its SSH session: a dropped
# connection does not stop it halfway, so the host ends on the new release or the old one.
set -u
label=$1 asked=$2
release=$asked
config=/etc/vllm-fleet
releases=$config/releases
unit=/etc/systemd/system/vllm.service
models=/var/lib/vllm-fleet/models

# To the deploy's output, and to the journal (tag vllm-fleet-activate), where an operator finds
# when a release was activated or rolled back.
say() {
    echo "vllm-fleet: $*" >&2
    logger -t vllm-fleet-activate -- "$*" 2>/dev/null || true
}

# Replace a symlink in one rename, so it never points nowhere.
relink() { ln -sfn "$1" "$2.tmp" && mv -T "$2.tmp" "$2"; }

make_current() {
    relink "$1" "$releases/current"
    relink releases/current/vllm.env "$config/vllm.env"
    cp "$releases/$1/vllm.service" "$unit.tmp" && mv -f "$unit.tmp" "$unit"
    systemctl daemon-reload
}

serves() {
    (
        . "$releases/$1/release.conf"
        /usr/local/lib/vllm-fleet/vllm-ready "$label" "$URL" "$MODEL" "$TIMEOUT"
    )
}

# A host deployed before releases existed: its unit and env file become the first release,
# so that the first new one has something to go back to.
if [ ! -e "$releases/current" ] && [ -f "$unit" ] && [ -f "$config/vllm.env" ] && [ ! -L "$config/vllm.env" ]; then
    mkdir -p -m 700 "$releases/legacy"
    cp -p "$unit" "$releases/legacy/vllm.service"
    cp -p "$config/vllm.env" "$releases/legacy/vllm.env"
    # The unit's own header names what it serves: "# Model: M served as NAME on ADDRESS:PORT (method)".
    read -r model address port <<EOF
$(sed -n 's/^# Model: .* served as \(.*\) on \(.*\):\([0-9]*\) (.*$/\1 \2 \3/p' "$unit")
EOF
    case "$address" in 0.0.0.0) address=127.0.0.1 ;; ::) address='[::1]' ;; *:*) address="[$address]" ;; esac
    printf "MODEL=%s\nURL=http://%s:%s\nTIMEOUT=900\n" "$model" "$address" "$port" >"$releases/legacy/release.conf"
    relink legacy "$releases/current"
fi

before=$(readlink "$releases/current" 2>/dev/null || true)
[ "$release" = current ] && release=$before
if [ -z "$release" ] || [ ! -f "$releases/$release/vllm.service" ]; then
    say "$label has no release '$asked' to activate"
    exit 1
fi
if [ "$release" != "$before" ]; then
    fallback=$before
    make_current "$release"
else
    fallback=$(readlink "$releases/previous" 2>/dev/null || true)
fi
systemctl restart vllm.service

if serves "$release"; then
    [ -n "$before" ] && [ "$before" != "$release" ] && relink "$before" "$releases/previous"
    keep_previous=$(readlink "$releases/previous" 2>/dev/null || true)
    for dir in "$releases"/*; do
        name=$(basename "$dir")
        # current and previous are links: removing through them would empty the releases they name.
        [ -L "$dir" ] || [ "$name" = "$release" ] || [ "$name" = "$keep_previous" ] || rm -rf "$dir"
    done
    # Shipped models (vllm_model_dir) that neither kept release serves.
    for dir in "$models"/*; do
        [ -d "$dir" ] || continue
        grep -qsF "$dir" "$releases/$release/vllm.service" "$releases/$keep_previous/vllm.service" || rm -rf "$dir"
    done
    say "$label serves release $release"
    exit 0
fi

if [ -z "$fallback" ] || [ ! -d "$releases/$fallback" ]; then
    say "release $release did not come up on $label and there is no earlier release to go back to"
    exit 1
fi
say "release $release did not come up on $label: going back to release $fallback"
make_current "$fallback"
systemctl restart vllm.service
if serves "$fallback"; then
    say "$label ROLLED BACK to release $fallback, which serves; release $release is kept for inspection until the next deploy"
    exit 3
fi
say "release $fallback did not come up on $label either"
exit 4
