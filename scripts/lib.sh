# Shared helpers for scripts/: installing what the project needs on a fresh machine.

step() { printf '\n==> %s\n' "$*"; }

# Rust toolchain (the machines come with rustup; install it only where it is missing).
need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      apt_install rustup
      rustup default stable
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
}

# Go, for the Alertmanager oracle in the differential tests.
need_go() {
  command -v go >/dev/null 2>&1 && return 0
  [ -x /usr/local/go/bin/go ] && { export PATH="/usr/local/go/bin:$PATH"; return 0; }
  apt_install golang-go
}

# need_cmd COMMAND DEBIAN_PACKAGE: installs the package when the command is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  apt_install "$2"
}

# Where every install's full output goes; each install prints one line naming it.
KH_INSTALL_LOG=${KH_INSTALL_LOG:-${TMPDIR:-/tmp}/kafka-healing-install.log}

# The first `cargo build` compiles every dependency: say so, with an estimate, before a
# silence of several minutes. Quiet once the binary is built.
build_heading() {
  local profile=${1:-release}
  [ -e "target/$profile/kafka-healing" ] && return 0
  step "building kafka-healing (first build: about 11 minutes on 2 cores)"
}

_apt_updated=""
# apt_install PACKAGE...: installs the missing ones quietly, one line for the lot, and
# starts no service: a policy-rc.d answering 101 ("action forbidden") stops the packages'
# maintainer scripts from starting daemons (supervisor, prometheus, …), and under systemd
# the units they enabled are disabled again. The demo and tests run their own daemons.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  printf 'installing %s (apt-get; full output in %s)\n' "${missing[*]}" "$KH_INSTALL_LOG"
  local policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# added by kafka-healing scripts/lib.sh during apt-get install\nexit 101\n' |
      $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0
  {
    echo "== $(date -u +%FT%TZ) apt-get install ${missing[*]}"
    if [ -z "$_apt_updated" ]; then $sudo apt-get update -q; fi &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >>"$KH_INSTALL_LOG" 2>&1 || rc=$?
  [ -n "$policy_added" ] && $sudo rm -f /usr/sbin/policy-rc.d
  if [ "$rc" -ne 0 ]; then
    echo "apt-get install ${missing[*]} failed (exit $rc); the end of $KH_INSTALL_LOG:" >&2
    tail -n 20 "$KH_INSTALL_LOG" >&2
    return "$rc"
  fi
  _apt_updated=1
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    local units
    units=$(for p in "${missing[@]}"; do dpkg -L "$p" 2>/dev/null; done |
      sed -n 's#^/\(usr/\)\?lib/systemd/system/\([^/@]*\.service\)$#\2#p' | sort -u)
    # shellcheck disable=SC2086 # one word per unit
    [ -n "$units" ] && $sudo systemctl disable --now $units >>"$KH_INSTALL_LOG" 2>&1 || true
  fi
}
