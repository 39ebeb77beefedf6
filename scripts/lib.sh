# Shared helpers for scripts/: installing what the project needs on a fresh machine.

step() { printf '\n==> %s\n' "$*"; }

# Rust toolchain (the machines come with rustup; install it only where it is missing).
need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      step "installing Rust (rustup)"
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
  step "installing Go"
  apt_install golang-go
}

# need_cmd COMMAND DEBIAN_PACKAGE: installs the package when the command is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  step "installing $2 (for $1)"
  apt_install "$2"
}

_apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ -z "$_apt_updated" ]; then $sudo apt-get update -qq; _apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
