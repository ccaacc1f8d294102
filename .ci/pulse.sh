#!/usr/bin/env bash
# Start a PulseAudio daemon with a null sink "streamcli_test" for the microphone tests.
#
# Idempotent: when the daemon already answers on its socket, it only makes sure the sinks
# exist and exits 0. Works as root (CI containers, no HOME needed) and as a normal user.
# It exits once the monitor delivers audio promptly (about 2 s after a fresh start).
# Stop it with:   XDG_RUNTIME_DIR=/tmp/streamcli-pulse pulseaudio --kill
#
# Clients find the daemon through PULSE_SERVER; the script prints the variables to use on
# stdout, so CI can append them to its environment:   .ci/pulse.sh >> "$GITHUB_ENV"
# Audio played to the sink (paplay --device=streamcli_test) comes back on its monitor source,
# "streamcli_test.monitor", which is also made the default source: any program that records
# from the ALSA device "pulse" (or "default") hears it.
#
# Environment: STREAMCLI_PULSE_DIR (default /tmp/streamcli-pulse) holds the socket and the log.
set -euo pipefail

dir=${STREAMCLI_PULSE_DIR:-/tmp/streamcli-pulse}
sink=streamcli_test
drain=streamcli_test_drain
socket="$dir/native"
export PULSE_SERVER="unix:$socket"

say() { echo "pulse.sh: $*" >&2; }

running() { pactl info >/dev/null 2>&1; }

has_sink() { pactl list short sinks | grep -q "^[0-9]*[[:space:]]$1[[:space:]]"; }

ensure_sink() {
    has_sink "$sink" || pactl load-module module-null-sink "sink_name=$sink rate=48000" >/dev/null
    # A null sink renders in blocks of up to 2 s unless some client asks for low latency, so
    # a recorder would get its first audio 0.5-2 s late, then in bursts. A loopback that
    # reads the monitor at 20 ms (into a second null sink) keeps it rendering like a real
    # device's clock.
    has_sink "$drain" || pactl load-module module-null-sink "sink_name=$drain" >/dev/null
    if ! pactl list short modules | grep -q "module-loopback.*source=$sink.monitor"; then
        pactl load-module module-loopback "source=$sink.monitor" "sink=$drain" \
            latency_msec=20 source_dont_move=1 sink_dont_move=1 >/dev/null
    fi
    pactl set-default-sink "$sink"
    pactl set-default-source "$sink.monitor"
}

# True once a recorder gets 50 ms of the monitor within 300 ms. Right after the sink is
# created it still sleeps through its first (up to 2 s) block; tests must not start then.
prompt() {
    [ "$(timeout 0.3 parec --latency-msec=20 --device="$sink.monitor" --raw \
        --format=s16le --rate=48000 --channels=2 2>/dev/null | head -c 9600 | wc -c)" -eq 9600 ]
}

wait_prompt() {
    for _ in $(seq 20); do
        prompt && return 0
    done
    say "the monitor of $sink does not deliver audio promptly"
    return 1
}

report() {
    echo "PULSE_SERVER=$PULSE_SERVER"
    echo "PULSE_SOURCE=$sink.monitor"
}

for tool in pulseaudio pactl parec; do
    if ! command -v "$tool" >/dev/null; then
        say "$tool is not installed (apt-get install pulseaudio pulseaudio-utils)"
        exit 1
    fi
done

if running; then
    ensure_sink
    wait_prompt
    say "already running on $PULSE_SERVER"
    report
    exit 0
fi

mkdir -p "$dir"
chmod 700 "$dir"
rm -f "$socket"

# -n: no default.pa (it would probe for sound cards a container does not have).
# --system=false + XDG_RUNTIME_DIR: as root, PulseAudio only warns ("not intended to be run
# as root") and runs as a per-user daemon with its runtime files in $dir.
# auth-anonymous=1: a client with another HOME (no shared cookie) may still connect.
# stdio goes to the log: a daemon holding the caller's pipe open would hang `$(...)` and
# subprocess.run(capture_output=True).
XDG_RUNTIME_DIR="$dir" pulseaudio \
    --daemonize=yes --system=false -n \
    --exit-idle-time=-1 --disallow-exit=yes --disallow-module-loading=no \
    --use-pid-file=yes --log-target=stderr \
    --load="module-native-protocol-unix socket=$socket auth-anonymous=1" \
    </dev/null >>"$dir/pulse.log" 2>&1 || {
    say "pulseaudio failed to start; its log ($dir/pulse.log):"
    tail -n 20 "$dir/pulse.log" >&2 || true
    exit 1
}

for _ in $(seq 50); do
    running && break
    sleep 0.1
done
if ! running; then
    say "pulseaudio started but does not answer on $PULSE_SERVER; its log ($dir/pulse.log):"
    tail -n 20 "$dir/pulse.log" >&2 || true
    exit 1
fi
ensure_sink
wait_prompt
say "started on $PULSE_SERVER with null sink $sink"
report
