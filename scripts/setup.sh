#!/usr/bin/env bash
# crashlab's one setup script. It installs what the project needs on this
# machine (Redis, the real Toxiproxy server, the Python venv) and is meant to be
# run again and again: every step first checks whether its work is already done.
#
#   scripts/setup.sh [--quiet] [--with-chromium] [--with-docker]
#
# Environment:
#   CRASHLAB_WITH_CHROMIUM=1   same as --with-chromium
#   CRASHLAB_WITH_DOCKER=1     same as --with-docker
#   CRASHLAB_PYTHON=...        interpreter for .venv (default python3.11)
#   CRASHLAB_BIN_DIR=...       where toxiproxy-server goes (default /usr/local/bin,
#                              or .venv/bin when /usr/local/bin is not writable)
#
# Exits non-zero when something that was asked for could not be installed; the
# summary at the end says what and how to fix it. Full command output goes to
# .crashlab/setup.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOXIPROXY_VERSION="2.12.0"
TOXIPROXY_MODULE="github.com/Shopify/toxiproxy/v2"
PIP_MIN="25.1" # first pip with --group (PEP 735 dependency groups)
PYTHON="${CRASHLAB_PYTHON:-python3.11}"
VENV="$ROOT/.venv"
STAMP="$VENV/.crashlab-setup-stamp"
STATE="$ROOT/.crashlab"
LOG="$STATE/setup.log"
# Bump when this script changes what goes into the venv, so that old stamps no
# longer match and the next run reinstalls.
STAMP_SCHEMA=1

truthy() { [[ "${1:-}" =~ ^(1|true|yes|on)$ ]]; }

QUIET=0
WITH_CHROMIUM=0
WITH_DOCKER=0
truthy "${CRASHLAB_WITH_CHROMIUM:-}" && WITH_CHROMIUM=1
truthy "${CRASHLAB_WITH_DOCKER:-}" && WITH_DOCKER=1

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
    case "$arg" in
        --quiet | -q) QUIET=1 ;;
        --with-chromium) WITH_CHROMIUM=1 ;;
        --with-docker) WITH_DOCKER=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

mkdir -p "$STATE"
: >"$LOG"

# Two setups at once (say `make -j test demo`) would race on apt's lock and on
# the venv; the second one simply waits for the first and then finds it all done.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE/setup.lock"
    flock -w 900 9 || { echo "setup.sh: another setup.sh holds $STATE/setup.lock" >&2; exit 1; }
fi

# ---------------------------------------------------------------- reporting --
INSTALLED=() # what this run put on the machine
PRESENT=()   # what was already there
PROBLEMS=()  # required (or explicitly requested) and missing: makes us exit 1

say() { if [[ $QUIET == 0 ]]; then printf '%s\n' "$*"; fi; }
step() { say ""; say "==> $*"; }
installed() { INSTALLED+=("$1"); say "    installed: $1"; }
present() { PRESENT+=("$1"); say "    already there: $1"; }
problem() { PROBLEMS+=("$1"$'\n'"      fix: $2"); say "    NOT installed: $1"; }

# Runs a command with its output in the log (and on the terminal unless
# --quiet), so a failure can be diagnosed afterwards from .crashlab/setup.log.
run() {
    printf '\n$ %s\n' "$*" >>"$LOG"
    if [[ $QUIET == 1 ]]; then
        "$@" >>"$LOG" 2>&1
    else
        "$@" 2>&1 | tee -a "$LOG"
    fi
}

# ------------------------------------------------------------------ helpers --
can_be_root() { [[ $EUID -eq 0 ]] || command -v sudo >/dev/null 2>&1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif [[ -t 0 ]]; then
        sudo "$@"
    else
        # No terminal to type a password into (CI): fail instead of hanging.
        sudo -n "$@"
    fi
}

# pyenv's shims exist even when their version is not installed, so "is on PATH"
# is not enough: the interpreter must actually run and be 3.11 with venv.
python_ok() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' \
        >/dev/null 2>&1
}

toxiproxy_ok() {
    [[ -x "$1" ]] && timeout 10 "$1" --version 2>/dev/null | grep -Fq "version $TOXIPROXY_VERSION"
}

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        # The Go tarball's usual home, often not on a non-login shell's PATH.
        echo /usr/local/go/bin/go
    else
        return 1
    fi
}

# ------------------------------------------------------------ apt packages --
# Everything apt has to install is collected first, so that `apt-get update`
# and `apt-get install` each run at most once.
APT_PKGS=()
declare -A APT_FOR=() # package -> what it was wanted for, for the summary

want_apt() {
    local what="$1"
    shift
    local p
    for p in "$@"; do
        APT_PKGS+=("$p")
        APT_FOR[$p]="$what"
    done
}

step "System packages"
if command -v redis-server >/dev/null 2>&1; then
    present "redis-server ($(command -v redis-server))"
else
    want_apt redis-server redis-server
fi
# tmux: the test that drives `crashlab debug` the way a person at a terminal does
if command -v tmux >/dev/null 2>&1; then
    present "tmux ($(command -v tmux))"
else
    want_apt tmux tmux
fi
# graphviz: `dot` renders docs/diagrams/*.dot to the SVGs beside them
# (`make diagrams`; a test fails when an SVG is stale)
if command -v dot >/dev/null 2>&1; then
    present "graphviz ($(command -v dot))"
else
    want_apt graphviz graphviz
fi
if ! python_ok "$PYTHON"; then
    # Debian 12's own python3 is 3.11; pyenv users get it from pyenv instead.
    if [[ $PYTHON == python3.11 ]]; then
        want_apt python3.11 python3.11 python3.11-venv
    fi
fi
if [[ $WITH_CHROMIUM == 1 ]]; then
    if command -v chromium >/dev/null 2>&1; then
        present "chromium ($(command -v chromium))"
    else
        # Without any font, screenshots of reports come out as boxes.
        want_apt chromium chromium fonts-liberation
    fi
fi
if [[ $WITH_DOCKER == 1 ]]; then
    if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
        present "docker engine binaries ($(command -v dockerd))"
    else
        want_apt docker docker.io
    fi
    # `crashlab image build` makes its base image with debootstrap, so no
    # container registry is needed.
    if command -v debootstrap >/dev/null 2>&1; then
        present "debootstrap ($(command -v debootstrap))"
    else
        want_apt "docker image base" debootstrap
    fi
fi

APT_OK=0
POLICY_RC=/usr/sbin/policy-rc.d
OUR_POLICY_RC=0
cleanup() {
    if [[ $OUR_POLICY_RC == 1 ]]; then as_root rm -f "$POLICY_RC" || true; fi
}
trap cleanup EXIT

apt_install() {
    local what
    what="$(printf '%s\n' "${APT_FOR[@]}" | sort -u | paste -sd, -)"
    if ! command -v apt-get >/dev/null 2>&1; then
        problem "${APT_PKGS[*]} (for $what)" \
            "no apt-get here; install the equivalent packages with this system's package manager"
        return 0
    fi
    if ! can_be_root; then
        problem "${APT_PKGS[*]} (for $what)" \
            "not root and sudo is absent; as root run: apt-get update && apt-get install -y ${APT_PKGS[*]}"
        return 0
    fi
    # Installing a daemon's package starts its service (redis on :6379, dockerd);
    # crashlab starts its own servers on free ports, so forbid that for the
    # length of this install, unless the machine already has a policy.
    if [[ ! -e $POLICY_RC ]]; then
        if as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$POLICY_RC && chmod 755 $POLICY_RC"; then
            OUR_POLICY_RC=1
        fi
    fi
    say "    installing with apt: ${APT_PKGS[*]}"
    # Through env, because sudo drops the caller's environment. The lock
    # timeout rides out a concurrent apt (unattended-upgrades) instead of failing.
    local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    if run as_root "${apt[@]}" update \
        && run as_root "${apt[@]}" install -y --no-install-recommends "${APT_PKGS[@]}"; then
        APT_OK=1
        local p
        for p in "${APT_PKGS[@]}"; do installed "$p (apt)"; done
    else
        problem "${APT_PKGS[*]} (for $what)" \
            "apt-get failed, see $LOG; then run: apt-get update && apt-get install -y ${APT_PKGS[*]}"
    fi
    cleanup
    OUR_POLICY_RC=0
}

if [[ ${#APT_PKGS[@]} -gt 0 ]]; then
    apt_install
fi

# apt can succeed and still leave no binary on PATH (a diverted or odd
# package); what counts is the command the harness will run.
if [[ $APT_OK == 1 ]] && ! command -v redis-server >/dev/null 2>&1; then
    problem "redis-server on PATH" \
        "apt reported success but there is no redis-server binary; check 'dpkg -L redis-server'"
fi

# ------------------------------------------------------------------- python --
step "Python environment (.venv)"

venv_ok() {
    [[ -x $VENV/bin/python ]] \
        && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
            >/dev/null 2>&1
}

stamp_value() {
    {
        echo "schema=$STAMP_SCHEMA"
        "$VENV/bin/python" -VV
        cat "$ROOT/pyproject.toml"
    } | sha256sum | cut -d' ' -f1
}

pip_new_enough() {
    "$VENV/bin/python" - "$PIP_MIN" <<'EOF' >/dev/null 2>&1
import re, sys
import pip
def key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2])
sys.exit(key(pip.__version__) < key(sys.argv[1]))
EOF
}

python_step() {
    if ! python_ok "$PYTHON" && [[ -z ${CRASHLAB_PYTHON:-} ]] \
        && python_ok /usr/bin/python3.11; then
        # A pyenv shim for a version pyenv no longer has shadows Debian's own
        # 3.11 (which the apt step may just have installed).
        PYTHON=/usr/bin/python3.11
    fi
    if ! python_ok "$PYTHON"; then
        problem "Python 3.11 ($PYTHON)" \
            "install Python 3.11 with venv: 'pyenv install 3.11' or on Debian 12 'apt-get install python3.11 python3.11-venv'; or set CRASHLAB_PYTHON to a 3.11 interpreter"
        return 0
    fi

    if venv_ok; then
        present ".venv ($("$VENV/bin/python" -V 2>&1))"
    else
        if [[ -e $VENV ]]; then
            # A venv whose interpreter is gone (pyenv version removed) or is not
            # 3.11 cannot be repaired in place.
            say "    .venv exists but its python is broken or not 3.11: recreating it"
            rm -rf "$VENV"
        fi
        if ! run "$PYTHON" -m venv "$VENV"; then
            problem ".venv" "'$PYTHON -m venv .venv' failed, see $LOG"
            return 0
        fi
        installed ".venv ($("$VENV/bin/python" -V 2>&1))"
    fi

    local want have=""
    want="$(stamp_value)"
    [[ -f $STAMP ]] && have="$(cat "$STAMP")"
    # The stamp alone could outlive a half-deleted venv; the two entry points
    # are a cheap sign that the install itself is still there.
    if [[ $want == "$have" && -x $VENV/bin/crashlab && -x $VENV/bin/tox ]]; then
        present "python packages (pyproject.toml unchanged since last install)"
        return 0
    fi

    if pip_new_enough; then
        say "    pip in .venv is >= $PIP_MIN"
    elif run "$VENV/bin/python" -m pip install --upgrade "pip>=$PIP_MIN"; then
        installed "pip $("$VENV/bin/python" -m pip --version | cut -d' ' -f2) in .venv"
    else
        problem "pip >= $PIP_MIN in .venv" \
            "see $LOG; then: .venv/bin/python -m pip install --upgrade 'pip>=$PIP_MIN'"
        return 0
    fi

    rm -f "$STAMP"
    say "    installing crashlab (editable) with dependency group 'dev'"
    if run "$VENV/bin/python" -m pip install -e . --group dev; then
        echo "$want" >"$STAMP"
        installed "python packages: crashlab -e . --group dev"
    else
        problem "python packages" \
            "see $LOG; then: .venv/bin/python -m pip install -e . --group dev"
    fi
}
python_step

# ---------------------------------------------------------------- toxiproxy --
step "Toxiproxy server $TOXIPROXY_VERSION"

TOXIPROXY_BIN=""

toxiproxy_step() {
    local dest_dir="${CRASHLAB_BIN_DIR:-}"
    if [[ -z $dest_dir ]]; then
        if [[ -w /usr/local/bin ]]; then dest_dir=/usr/local/bin; else dest_dir="$VENV/bin"; fi
    fi

    local cand
    for cand in "$dest_dir/toxiproxy-server" "$(command -v toxiproxy-server || true)" \
        "$VENV/bin/toxiproxy-server"; do
        if [[ -n $cand ]] && toxiproxy_ok "$cand"; then
            TOXIPROXY_BIN="$cand"
            present "toxiproxy-server $TOXIPROXY_VERSION ($cand)"
            return 0
        fi
    done

    local go
    if ! go="$(find_go)"; then
        problem "toxiproxy-server $TOXIPROXY_VERSION (needs Go >= 1.23 to build)" \
            "install the Go toolchain >= 1.23 (Go's release tarball into /usr/local/go, then add /usr/local/go/bin to PATH); Debian 12's 'golang' package is 1.19, too old for toxiproxy $TOXIPROXY_VERSION"
        return 0
    fi

    local gobin
    gobin="$("$go" env GOBIN)"
    [[ -n $gobin ]] || gobin="$("$go" env GOPATH | cut -d: -f1)/bin"
    local built="$gobin/server"

    # A build left by an earlier run (one that could not copy it) is reused;
    # any other "server" in GOBIN is overwritten by go install.
    if toxiproxy_ok "$built"; then
        say "    reusing the build in $built"
    else
        say "    building with $("$go" env GOVERSION): go install $TOXIPROXY_MODULE/cmd/server@v$TOXIPROXY_VERSION"
        # A plain `go install` leaves the version as "git"; set it the way the
        # upstream release build does, so `toxiproxy-server --version` can be
        # checked by this script and by the harness.
        if ! run "$go" install \
            -ldflags="-s -w -X $TOXIPROXY_MODULE.Version=$TOXIPROXY_VERSION" \
            "$TOXIPROXY_MODULE/cmd/server@v$TOXIPROXY_VERSION"; then
            problem "toxiproxy-server $TOXIPROXY_VERSION" \
                "go install failed, see $LOG (Go >= 1.23 and the Go module proxy are needed)"
            return 0
        fi
        if ! toxiproxy_ok "$built"; then
            problem "toxiproxy-server $TOXIPROXY_VERSION" \
                "go install did not produce a working $built; see $LOG"
            return 0
        fi
    fi

    # A copy, not a link: another `go install .../cmd/server` would overwrite
    # GOBIN/server with a different program.
    if mkdir -p "$dest_dir" && install -m 0755 "$built" "$dest_dir/toxiproxy-server"; then
        TOXIPROXY_BIN="$dest_dir/toxiproxy-server"
        installed "toxiproxy-server $TOXIPROXY_VERSION -> $TOXIPROXY_BIN"
        if [[ $dest_dir == "$VENV/bin" ]]; then
            say "    note: $dest_dir is on PATH only with the venv active"
        fi
    else
        problem "toxiproxy-server $TOXIPROXY_VERSION" \
            "could not copy $built to $dest_dir/toxiproxy-server; copy it by hand or set CRASHLAB_BIN_DIR"
    fi
}
toxiproxy_step

# ------------------------------------------------------------------- docker --
docker_answers() { timeout 15 docker info >/dev/null 2>&1; }

docker_step() {
    step "Docker engine (--with-docker)"
    if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
        # A failed apt install is already in the summary; don't say it twice.
        if [[ $APT_OK == 1 || -z ${APT_FOR[docker.io]:-} ]]; then
            problem "docker engine" "apt-get install -y docker.io (provides docker and dockerd)"
        fi
        return 0
    fi
    if docker_answers; then
        present "docker engine (docker info answers)"
        return 0
    fi

    local pidfile="$STATE/dockerd.pid" dlog="$STATE/dockerd.log" pid=""
    [[ -f $pidfile ]] && pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        say "    dockerd (pid $pid) from an earlier run is still starting; waiting for it"
    else
        if ! can_be_root; then
            problem "docker engine" "dockerd needs root: start it as root or add yourself to the docker group"
            return 0
        fi
        # No bridge and no iptables: this machine may not allow network setup,
        # and crashlab's containers only need host networking on loopback.
        say "    starting dockerd in the background (log: $dlog)"
        # A dead dockerd's pidfile would make the wait below read its pid
        # before the new dockerd writes its own, and give up at once.
        rm -f "$pidfile"
        local -a sudo_=()
        [[ $EUID -eq 0 ]] || sudo_=(sudo -n)
        # setsid + nohup: dockerd must outlive this script and its terminal.
        # 9>&-: it must not inherit the setup lock, or it would hold that lock
        # for as long as it runs and every later setup.sh would wait on it.
        setsid nohup "${sudo_[@]}" dockerd --bridge=none --iptables=false \
            --ip6tables=false --pidfile "$pidfile" >>"$dlog" 2>&1 </dev/null 9>&- &
        pid=$!
    fi

    local i
    for ((i = 0; i < 60; i++)); do
        if docker_answers; then
            installed "docker engine: dockerd started (pidfile $pidfile)"
            return 0
        fi
        # When it has already died, waiting longer will not help.
        if [[ -f $pidfile ]]; then pid="$(cat "$pidfile" 2>/dev/null || echo "$pid")"; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    problem "docker engine" \
        "dockerd did not answer 'docker info'; see $dlog (last lines: $(tail -n 3 "$dlog" 2>/dev/null | tr '\n' ' '))"
}
if [[ $WITH_DOCKER == 1 ]]; then docker_step; fi

# Requested optional packages whose apt install failed are already problems;
# this catches "installed, yet no binary".
if [[ $WITH_CHROMIUM == 1 ]] && ! command -v chromium >/dev/null 2>&1 \
    && [[ $APT_OK == 1 ]]; then
    problem "chromium" "apt reported success but there is no chromium binary; check 'dpkg -L chromium'"
fi

# ------------------------------------------------------------------ summary --
version_of() {
    # First line only; "missing" stands out in the table.
    "$@" 2>/dev/null | head -n 1 || true
}

ffmpeg_version() {
    local exe
    exe="$("$VENV/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null)" \
        || return 0
    echo "$(version_of "$exe" -version | cut -d' ' -f1-3) ($exe)"
}

redis_v="missing"
if command -v redis-server >/dev/null 2>&1; then
    redis_v="$(version_of redis-server --version | grep -o 'v=[^ ]*' | cut -c3-) ($(command -v redis-server))"
fi
toxi_v="missing"
if [[ -n $TOXIPROXY_BIN ]]; then
    toxi_v="$(version_of "$TOXIPROXY_BIN" --version | awk '{print $NF}') ($TOXIPROXY_BIN)"
fi
py_v="missing"
[[ -x $VENV/bin/python ]] && py_v="$("$VENV/bin/python" -V 2>&1 | cut -d' ' -f2) ($VENV/bin/python)"
ff_v="$(ffmpeg_version)"
[[ -n $ff_v ]] || ff_v="missing (comes with the imageio-ffmpeg wheel)"

say ""
echo "== crashlab setup: summary ($SECONDS s) =="
if [[ ${#INSTALLED[@]} -gt 0 ]]; then
    echo "installed now:"
    printf '  - %s\n' "${INSTALLED[@]}"
fi
if [[ ${#PRESENT[@]} -gt 0 ]]; then
    echo "already there:"
    printf '  - %s\n' "${PRESENT[@]}"
fi
echo "versions:"
printf '  %-17s %s\n' "redis-server" "$redis_v" "toxiproxy-server" "$toxi_v" \
    "python" "$py_v" "ffmpeg" "$ff_v"
if [[ $WITH_CHROMIUM == 1 ]]; then
    chromium_v="missing"
    command -v chromium >/dev/null 2>&1 \
        && chromium_v="$(version_of chromium --version) ($(command -v chromium))"
    printf '  %-17s %s\n' "chromium" "$chromium_v"
fi
if [[ $WITH_DOCKER == 1 ]]; then
    printf '  %-17s %s\n' "docker engine" \
        "$(timeout 15 docker version --format '{{.Server.Version}}' 2>/dev/null || echo 'not answering')"
fi
if [[ ${#PROBLEMS[@]} -gt 0 ]]; then
    echo "could NOT install:"
    printf '  - %s\n' "${PROBLEMS[@]}"
    echo "full log: $LOG"
    exit 1
fi
echo "all required parts are in place."
