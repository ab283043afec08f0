# t/shim/real/lib.sh - start, watch and stop the real programs: sourced
# by t/shim/real/run.sh (do they work under nprun) and bench/real.sh (their
# OS threads and rates, plain and under nprun).  POSIX sh.
#
# The sourcing script sets first: tmp (a scratch directory, mode 755, its
# www/ the tree make_tree writes), nprun (BUILD_DIR/bin/nprun), groups=
# and sampler= (it kills the process groups in $groups and ends $sampler
# on its way out); and defines fail MODE MESSAGE LOG... (up calls it).
# shellcheck shell=sh disable=SC2034,SC2154 # set here, read there; set there, read here

# runner MODE: the words that run a command in MODE.
runner() {
    if [ "$1" = plain ]; then echo ""; else echo "$nprun -p $1 --"; fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }'; }

# free_port: a port nothing uses on this machine, below the ephemeral range.
free_port() {
    while :; do
        p=$(od -An -N2 -tu2 /dev/urandom | awk '{print 20000 + $1 % 12000}')
        hex=$(printf '%04X' "$p")
        if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
            awk -v h=":$hex" '$2 ~ h"$" || $3 ~ h"$" {f = 1} END {exit !f}'; then
            echo "$p"
            return
        fi
    done
}

# alive PID: the process exists and is no zombie.
alive() {
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# listening PORT: something listens on 127.0.0.1:PORT.
listening() {
    hex=$(printf '%04X' "$1")
    awk -v a="0100007F:$hex" '$2 == a && $4 == "0A" {f = 1} END {exit !f}' /proc/net/tcp
}

# start NAME CMD...: runs CMD in the background, in a process group of its
# own, killed after 90 s, output in $tmp/NAME.log. Sets bg (its pid, which is
# CMD's own after nprun's exec) and bgrp (the group, timeout's pid).
start() {
    name=$1
    shift
    rm -f "$tmp/$name.pid"
    # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
    timeout -s KILL 90 sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
        "$tmp/$name.pid" "$@" < /dev/null > "$tmp/$name.log" 2>&1 &
    bgrp=$!
    groups="$groups $bgrp"
    i=0
    while [ ! -s "$tmp/$name.pid" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
    bg=$(cat "$tmp/$name.pid" 2>/dev/null)
}

# wait_listen PORT PID [SECONDS]: until PID listens on PORT; 1 if it died or
# took longer than SECONDS (10).
wait_listen() {
    i=0
    while ! listening "$1"; do
        alive "$2" || return 1
        [ $i -ge $((${3:-10} * 20)) ] && return 1
        sleep 0.05
        i=$((i + 1))
    done
}

# up MODE PORT LOG...: the server of the last start listens on PORT and, under
# nprun, has the shim mapped; else a failure (with the LOGs), its group killed.
up() {
    if ! wait_listen "$2" "$bg" 20; then
        upwhy="it did not listen on port $2"
    elif [ "$1" != plain ] && ! grep -q libnetpoll-preload "/proc/$bg/maps" 2>/dev/null; then
        upwhy="it runs without the shim (not in /proc/$bg/maps)"
    else
        return 0
    fi
    upmode=$1
    shift 2
    fail "$upmode" "$upwhy" "$@"
    kill -s KILL -- "-$bgrp" 2>/dev/null
    return 1
}

# finish GROUP SECONDS: waits for the background command to end by itself;
# sets rc (124 when it had to be killed).
finish() {
    i=0
    while [ -d "/proc/$1" ] && alive "$1"; do
        if [ $i -ge $(($2 * 20)) ]; then
            kill -s KILL -- "-$1" 2>/dev/null
            wait "$1" 2>/dev/null
            rc=124
            return
        fi
        sleep 0.05
        i=$((i + 1))
    done
    wait "$1"
    rc=$?
}

# describe STATUS: "exit status N" or "killed by SIGNAME".
describe() {
    if [ "$1" -gt 128 ] 2>/dev/null; then
        echo "killed by SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
    else
        echo "exit status $1"
    fi
}

# stop PID GROUP SIGNAL: sends SIGNAL to the server and waits up to 10 s for
# it to end; sets rc (its exit status as the shell reports it), or
# rc=timeout after killing its group. When the server had already ended,
# server_note says how (for the failure messages), else it is empty.
stop() {
    server_note=
    if ! alive "$1"; then
        finish "$2" 10
        server_note="; the server had ended before the SIGTERM, $(describe "$rc")"
        kill -s KILL -- "-$2" 2>/dev/null
        return
    fi
    kill "-$3" "$1" 2>/dev/null
    i=0
    while alive "$1"; do
        if [ $i -ge 200 ]; then
            kill -s KILL -- "-$2" 2>/dev/null
            wait "$2" 2>/dev/null
            rc=timeout
            return
        fi
        sleep 0.05
        i=$((i + 1))
    done
    finish "$2" 10
    kill -s KILL -- "-$2" 2>/dev/null   # anything left in the group
}

# threads_of PID [tree]: "STARTTIME THREADS": the start time of PID (to
# tell it from a later process with its number) and the Threads: of PID, and
# of its children with tree; nothing once PID has ended.
threads_of() {
    tp=$1
    [ "${2:-}" = tree ] && tp="$tp $(cat /proc/"$1"/task/*/children 2>/dev/null)"
    { cat "/proc/$1/stat" && for q in $tp; do cat "/proc/$q/status"; done; } 2>/dev/null |
        awk 'NR == 1 {st = $22} /^Threads:/ {n += $2} END {if (st != "") print st, n + 0}'
}

# sample_start PID [tree] / sample_stop: the largest Threads: of PID (with
# its children with tree) while the sampler ran, in os_threads ("?" when PID
# ended before a look). The sampler ends when told to (by a file: a signal
# can be lost between fork and the subshell's own handlers), when PID ends,
# or after 120 s.
sample_start() {
    echo '?' > "$tmp/threads"   # when PID ended before a look
    rm -f "$tmp/sampler.stop"
    (
        first=$(threads_of "$1" "${2:-}")
        st0=${first% *}
        max=${first#* }
        [ -n "$first" ] && echo "$max" > "$tmp/threads"
        i=0
        while [ -n "$first" ] && [ ! -f "$tmp/sampler.stop" ] && [ $i -lt 2400 ]; do
            now=$(threads_of "$1" "${2:-}")
            [ "${now% *}" = "$st0" ] || break
            n=${now#* }
            if [ "$n" -gt "$max" ]; then
                max=$n
                echo "$max" > "$tmp/threads"
            fi
            sleep 0.05
            i=$((i + 1))
        done
    ) &
    sampler=$!
}
sample_stop() {
    : > "$tmp/sampler.stop"
    wait "$sampler" 2>/dev/null
    sampler=
    os_threads=$(cat "$tmp/threads")
}

# A file tree to serve: sizes from 0 to 300 kB, a name with a space, and
# its manifest (sha256sum lines, ./path).
www=$tmp/www
make_tree() {
    [ -f "$tmp/manifest" ] && return 0
    mkdir -p "$www/a/b" "$www/c" || return 1
    i=0
    for size in 0 1 13 100 512 1000 1460 4096 4097 8192 10000 16384 32768 65535 65536 \
        70000 100000 131072 200000 300001; do
        case $((i % 3)) in 0) d=$www ;; 1) d=$www/a/b ;; *) d=$www/c ;; esac
        head -c "$size" /dev/urandom > "$d/f$i-$size.bin"
        i=$((i + 1))
    done
    printf 'hello, world\n' > "$www/index.txt"
    head -c 5000 /dev/urandom > "$www/c/with space.bin"
    head -c 4096 /dev/urandom > "$www/4k.bin"
    chmod -R a+rX "$www"
    (cd "$www" && find . -type f -exec sha256sum {} + | sort -k2) > "$tmp/manifest"
}

# An nginx configuration: nginx_conf DIR PORT WORKERS.
nginx_conf() {
    mkdir -p "$1/tmp"
    cat > "$1/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $3;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$2;
        root $www;
    }
}
EOF
}

# A plain nginx serving the tree to the clients under test (curl, wrk);
# sets hport, hpid, hgrp.
plain_http() {
    hport=$(free_port)
    mkdir -p "$tmp/nginx-plain"
    nginx_conf "$tmp/nginx-plain" "$hport" 2
    start plain-http nginx -p "$tmp/nginx-plain" -e "$tmp/nginx-plain/error.log" \
        -c "$tmp/nginx-plain/nginx.conf"
    hpid=$bg
    hgrp=$bgrp
    wait_listen "$hport" "$hpid"
}

# wrk_check LOG: wrk's numbers are sane (requests, few socket errors, no
# error statuses); sets wrk_reqs, wrk_rps, wrk_why.
wrk_check() {
    wrk_reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$1")
    wrk_rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1" | awk '{printf "%.0f", $1}')
    sockerr=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$1" |
        awk '{print $1 + $2 + $3 + $4}')
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$1")
    wrk_why=
    if [ -z "$wrk_reqs" ] || [ "$wrk_reqs" -lt 100 ]; then
        wrk_why="${wrk_reqs:-no} requests"
    elif [ "${sockerr:-0}" -gt 5 ]; then
        wrk_why="$sockerr socket errors"
    elif [ "${non2xx:-0}" -gt 0 ]; then
        wrk_why="$non2xx responses not 2xx or 3xx"
    fi
}

# MariaDB: small logs and pool, no binary log; as root it runs as root.
mariadb_opts() {
    echo "--no-defaults $([ "$(id -u)" = 0 ] && echo --user=root) --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --skip-log-bin"
}
# mariadb_data DIR: a fresh data directory at DIR, copied from one made
# once ($tmp/mariadb-seed); 1 (and the log in $tmp/install-db.log) if
# mariadb-install-db fails.
mariadb_data() {
    if [ ! -d "$tmp/mariadb-seed" ]; then
        # shellcheck disable=SC2046
        timeout -s KILL 60 mariadb-install-db $(mariadb_opts) --datadir="$tmp/mariadb-seed" \
            --auth-root-authentication-method=normal --skip-test-db > "$tmp/install-db.log" 2>&1 || {
            rm -rf "$tmp/mariadb-seed"
            return 1
        }
    fi
    rm -rf "$1"
    cp -a "$tmp/mariadb-seed" "$1"
}
# mariadb_start MODE DATA PORT: mariadbd on DATA, a thread per connection
mariadb_start() {
    # shellcheck disable=SC2046
    start mariadb $(runner "$1") mariadbd $(mariadb_opts) --datadir="$2" --port="$3" \
        --bind-address=127.0.0.1 --socket="$2/sock" --pid-file="$2/pid" --skip-name-resolve \
        --max-connections=1000 --thread-handling=one-thread-per-connection
}
# mariadb_slap PORT ARGS...: mariadb-slap as root on 127.0.0.1:PORT
mariadb_slap() {
    p=$1
    shift
    timeout -s KILL 120 mariadb-slap --no-defaults -h 127.0.0.1 -P "$p" -u root "$@"
}

# apache_conf DIR PORT: apache2 with mpm_worker, 2 children of 128 threads
# (a thread holds each connection for its life), serving $www
apache_conf() {
    mods=/usr/lib/apache2/modules
    cat > "$1/httpd.conf" <<EOF
ServerRoot /etc/apache2
ServerName localhost
Listen 127.0.0.1:$2
PidFile $1/httpd.pid
ErrorLog $1/error.log
LogLevel warn
LoadModule mpm_worker_module $mods/mod_mpm_worker.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule mime_module $mods/mod_mime.so
TypesConfig /etc/mime.types
DocumentRoot $www
<Directory $www>
  Require all granted
</Directory>
StartServers 2
ServerLimit 4
ThreadLimit 128
ThreadsPerChild 128
MaxRequestWorkers 256
MaxKeepAliveRequests 0
Mutex file:$1
EOF
    # As root its children run as www-data.
    [ "$(id -u)" = 0 ] && printf 'User www-data\nGroup www-data\n' >> "$1/httpd.conf"
    chmod -R a+rwX "$1"
}
# apache_start MODE DIR: apache2 in the foreground on DIR's configuration
apache_start() {
    # shellcheck disable=SC2046
    APACHE_RUN_DIR=$2 start apache $(runner "$1") apache2 -f "$2/httpd.conf" -DFOREGROUND
}

# fetch_tree DIR PORT: every file of the tree (make_tree) from
# 127.0.0.1:PORT by one curl into DIR, each body checked against the
# manifest; sets k (files) and why ("" when all came right)
fetch_tree() {
    ft_dir=$1 ft_port=$2
    set --
    : > "$ft_dir/want"
    k=0
    while read -r h f; do
        f=${f#./}
        u=$(echo "$f" | sed 's/ /%20/g')
        set -- "$@" -o "$ft_dir/got$k" "http://127.0.0.1:$ft_port/$u"
        echo "$h  $ft_dir/got$k" >> "$ft_dir/want"
        k=$((k + 1))
    done < "$tmp/manifest"
    why=
    if ! timeout -s KILL 30 curl -sS -f "$@" > "$tmp/curl.log" 2>&1; then
        why="curl failed"
    elif ! sha256sum -c --quiet "$ft_dir/want" > "$tmp/curl.log" 2>&1; then
        why="curl: wrong bodies"
    fi
}

# tree_load C: wrk -t2 -cC for 2 s on /4k.bin of the server just started
# ($bg on $port), its process tree sampled; why says what went wrong
tree_load() {
    sample_start "$bg" tree
    timeout -s KILL 30 wrk -t2 -c"$1" -d2s "http://127.0.0.1:$port/4k.bin" > "$tmp/wrk.log" 2>&1
    wrc=$?
    sample_stop
    wrk_check "$tmp/wrk.log"
    if [ "$wrc" -ne 0 ]; then
        why="wrk: exit $wrc"
    elif [ -n "$wrk_why" ]; then
        why="wrk: $wrk_why"
    fi
}

# stop_tree: SIGTERM to the master $bg, as stop does; left names its
# children still alive after it ended
stop_tree() {
    st_children=$(cat /proc/"$bg"/task/*/children 2>/dev/null)
    stop "$bg" "$bgrp" TERM
    left=
    for w in $st_children; do alive "$w" && left="$left $w"; done
}
