# Helpers shared by the bench/ scripts (sourced, not run). The caller sets BENCH_NAME (the
# prefix of its messages) and `here`, `repo`, `out` (bench/, the repository, bench/out/), then
# sources this file. Loopback only; every wait is bounded; processes started through `pids`
# (directly, or with bg_wait) are stopped on exit.

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "$BENCH_NAME: $*" >&2; }

# need_tools CMD...: install the missing ones with apt-get when root, else fail naming them
need_tools() {
    local need=() c
    for c in "$@"; do command -v "$c" >/dev/null || need+=("$c"); done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ]; then
        log "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        die "missing ${need[*]}: sudo apt-get install ${need[*]}"
    fi
}

# release_binaries BUILD(0|1): sets NGINX and MODULE. The release nginx + .so are copied into
# bench/out/bin, because the tests may rebuild nginx-build/out/ as debug at any moment.
release_binaries() {
    local bin=$out/bin nginx_sys_out build_dir
    mkdir -p "$bin"
    if [ "$1" = 1 ]; then
        "$repo/nginx-build/build" --release
        nginx_sys_out=$(ls -t "$repo"/target/release/build/nginx-sys-*/output | head -n 1)
        build_dir=$(sed -n 's/^cargo::metadata=build_dir=//p' "$nginx_sys_out")
        install -m 755 "$build_dir/nginx" "$bin/nginx"
        install -m 755 "$repo/target/release/libnginx_triage.so" "$bin/ngx_http_triage_module.so"
        echo release > "$bin/PROFILE"
    fi
    [ -x "$bin/nginx" ] && [ -f "$bin/ngx_http_triage_module.so" ] ||
        die "no binaries in $bin (run without --no-build)"
    [ "$(cat "$bin/PROFILE" 2>/dev/null)" = release ] || die "$bin does not hold a release build"
    NGINX=$bin/nginx
    MODULE=$bin/ngx_http_triage_module.so
}

# --- processes -------------------------------------------------------------------------------

pids=()
run_dir=$(mktemp -d "$out/run.XXXXXX")

alive() { # running and not a zombie
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

forget() { # drop PID from pids
    local keep=() q
    for q in "${pids[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
    pids=("${keep[@]}")
}

stop() { # stop PID [SIGNAL] [SECONDS]: signal, wait bounded, then KILL it and its children
    local pid=$1 sig=${2:-QUIT} secs=${3:-10} i kids
    alive "$pid" || { wait "$pid" 2>/dev/null || true; forget "$pid"; return 0; }
    kids=$(pgrep -P "$pid" || true)
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        log "pid $pid did not exit after SIG$sig in ${secs}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for k in $kids; do
        for ((i = 0; i < 30; i++)); do alive "$k" || break; sleep 0.1; done
        alive "$k" && kill -KILL "$k" 2>/dev/null || true
    done
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# bg_wait CMD...: run CMD in the background and wait for it, so that a signal to the script
# interrupts the wait at once and cleanup stops CMD (timeout(1) passes the signal on).
bg_wait() {
    local pid rc=0
    "$@" &
    pid=$!
    pids+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return $rc
}

cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do stop "$p" TERM 5; done
    pids=()
    rm -rf "$run_dir"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- ports -----------------------------------------------------------------------------------

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# find_ports N: sets free_ports to N ports nothing listens on, below the kernel's ephemeral
# range (so that no outgoing connection of a run takes one before a later part listens on it)
find_ports() {
    local want=$1 eph_lo span p tries
    free_ports=()
    read -r eph_lo _ < /proc/sys/net/ipv4/ip_local_port_range
    span=$((eph_lo - 10000 - 200))
    [ "$span" -gt 1000 ] || die "ephemeral port range starts too low ($eph_lo)"
    p=$((10000 + $$ % span))
    for ((tries = 0; tries < 200 && ${#free_ports[@]} < want; tries++, p++)); do
        port_busy "$p" || free_ports+=("$p")
    done
    [ ${#free_ports[@]} -eq "$want" ] || die "no $want free ports found"
}

# check_log DIR WHAT: fail on anything at warn level or above other than shutdown chatter
# (optional 3rd argument: a grep -E pattern of lines that are expected)
check_log() {
    local allowed=${3:-'^$'}
    if grep -v -e '\[notice\]' "$1/logs/error.log" 2>/dev/null | grep -Ev "$allowed" | grep -q .; then
        grep -v -e '\[notice\]' "$1/logs/error.log" | grep -Ev "$allowed" | head -5 >&2
        die "$2: unexpected error log lines ($1/logs/error.log)"
    fi
}

# --- statistics and report -------------------------------------------------------------------

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {
    if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { # "min..max" relative to the median, in %
    local m; m=$(median "$@")
    printf '%s\n' "$@" | sort -g | awk -v m="$m" 'NR == 1 {lo = $1} {hi = $1}
        END {printf "%+.1f%%..%+.1f%%", (lo / m - 1) * 100, (hi / m - 1) * 100}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

report=()
say() { echo "$*"; report+=("$*"); }

machine="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"

# wrk_run PORT SECONDS [STATUS] [MASTER_PID]: sets RPS and P99 (ms); with MASTER_PID also
# USER_US and SYS_US, the CPU time its workers spent per request (microseconds, from
# /proc/PID/stat: clock ticks, so runs of a few seconds). Fails on socket errors, and on any
# response that is not a 2xx, or (with STATUS, e.g. 502) on any that is a 2xx/3xx: wrk only
# counts "Non-2xx or 3xx", so every response must be one of those.
wrk_run() {
    local port=$1 secs=$2 status=${3:-} master=${4:-} o r before after
    [ -n "$master" ] && before=$(workers_cpu_ticks "$master")
    bg_wait timeout $((secs + 30)) wrk --latency -t "$THREADS" -c "$CONNS" -d "${secs}s" \
        "http://127.0.0.1:$port/" > "$run_dir/wrk.txt" || die "wrk failed on port $port"
    [ -n "$master" ] && after=$(workers_cpu_ticks "$master")
    o=$(cat "$run_dir/wrk.txt")
    if grep -q -e 'Socket errors' <<<"$o" ||
        { [ -z "$status" ] && grep -q -e 'Non-2xx' <<<"$o"; } ||
        { [ -n "$status" ] && ! awk '/requests in/ {n = $1} /Non-2xx or 3xx responses:/ {m = $5}
                                     END {exit !(n > 0 && n == m)}' <<<"$o"; }; then
        echo "$o" >&2
        die "wrk saw errors or unexpected statuses on port $port"
    fi
    r=$(awk '/^Requests\/sec:/ {rps = $2}
         $1 == "99%" {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                      p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v}
         END {if (rps == "" || p99 == "") exit 1; printf "%.0f %.3f\n", rps, p99}' <<<"$o") ||
        die "cannot parse wrk output"
    read -r RPS P99 <<<"$r"
    if [ -n "$master" ]; then
        # the workers' CPU time per request, in microseconds: user, system
        r=$(awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" \
            '/requests in/ {n = $1}
             END {split(b, x); split(a, y); if (n == 0) exit 1
                  printf "%.2f %.2f\n", (y[1] - x[1]) / hz / n * 1e6, (y[2] - x[2]) / hz / n * 1e6}' <<<"$o") ||
            die "cannot compute CPU per request"
        read -r USER_US SYS_US <<<"$r"
    fi
}

# workers_cpu_ticks MASTER_PID: "user system" clock ticks used so far by the master's children
workers_cpu_ticks() {
    local k u=0 s=0 f
    for k in $(pgrep -P "$1"); do
        # fields after the command name (which may hold spaces): utime is the 12th, stime the 13th
        f=$(sed 's/.*) //' "/proc/$k/stat" 2>/dev/null) || continue
        read -r -a f <<<"$f"
        u=$((u + f[11])) s=$((s + f[12]))
    done
    echo "$u $s"
}

# record_results TITLE ENVLINE CMDLINE: append the report to bench/RESULTS.md
record_results() {
    local res="$here/RESULTS.md"
    [ -f "$res" ] || printf '# bench results\n\nAppended by the bench/ scripts; see bench/README.md.\n' > "$res"
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC')${1:+ — $1}"
        echo
        echo "- machine: $machine"
        echo "- tree: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(
            git -C "$repo" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted src changes')"
        echo "- command: \`$2 $3\`"
        echo
        echo '```'
        printf '%s\n' "${report[@]}"
        echo '```'
    } >> "$res"
    log "appended to $res"
}

# callgrind_run DIR PORT COUNT TAG [STATUS] [ALLOWED_LOG_RE]: run the single-process nginx of
# DIR/nginx.conf (master_process off) under callgrind while bench/client.pl sends it COUNT
# requests on one keep-alive connection, each answered STATUS (default 200); stop it; set IR,
# its total instructions; keep the profile as bench/out/callgrind/TAG.out. CG_OPTS: extra
# valgrind options.
callgrind_run() {
    local dir=$1 port=$2 count=$3 tag=$4 status=${5:-200} allowed=${6:-'^$'} pid client rc=0
    # shellcheck disable=SC2086 # CG_OPTS is a list of options
    valgrind --tool=callgrind ${CG_OPTS:-} --callgrind-out-file="$dir/callgrind.out" \
        --log-file="$dir/valgrind.log" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" &
    pid=$!
    pids+=("$pid")
    # the client retries refused connects: nginx sees exactly COUNT requests on one connection
    timeout 900 perl "$here/client.pl" "$port" "$count" 180 60 "$status" >/dev/null &
    client=$!
    pids+=("$client")
    # fail fast if nginx dies (e.g. it could not bind) instead of letting the client retry
    while alive "$client"; do
        alive "$pid" || { stop "$client" KILL 5; die "callgrind $tag: nginx exited early (see $dir/logs/error.log)"; }
        sleep 0.2
    done
    wait "$client" || rc=$?
    forget "$client"
    [ "$rc" = 0 ] || { stop "$pid" KILL 5; die "callgrind $tag: client failed (see $dir)"; }
    sleep 1 # let nginx see the client's close
    stop "$pid" QUIT 120
    IR=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out" 2>/dev/null)
    [ -n "$IR" ] || die "callgrind $tag: no total in $dir/callgrind.out"
    check_log "$dir" "callgrind $tag" "$allowed"
    mkdir -p "$out/callgrind"
    cp "$dir/callgrind.out" "$out/callgrind/$tag.out"
}
