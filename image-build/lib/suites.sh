# Sourced by the recipe and by scripts/aarch64-userland.sh: the two Raspberry Pi OS bases
# the appliance supports, and what the pinned wheels must be built for on each.
#   bookworm  Raspberry Pi OS (Legacy) / Debian 12: CPython 3.11, glibc 2.36
#   trixie    Raspberry Pi OS (current) / Debian 13: CPython 3.13, glibc 2.41
# suite_params SUITE sets: suite_python (3.11), suite_abi (cp311), suite_glibc_minor (36).
# wheel_platform_args MACHINE prints the pip --platform flags a wheel may carry on that
# base (every manylinux tag from the base's glibc down to manylinux2014), one a line.
# shellcheck shell=bash
suite_params() {
  case "${1:-}" in
    bookworm) suite_python=3.11; suite_glibc_minor=36 ;;
    trixie) suite_python=3.13; suite_glibc_minor=41 ;;
    *) echo "unknown suite: ${1:-} (bookworm or trixie)" >&2; return 2 ;;
  esac
  suite_abi="cp${suite_python/./}"
  export suite_python suite_abi suite_glibc_minor
}

wheel_platform_args() {
  local machine="$1" minor
  for minor in $(seq "$suite_glibc_minor" -1 17); do
    printf -- '--platform\nmanylinux_2_%s_%s\n' "$minor" "$machine"
  done
  printf -- '--platform\nmanylinux2014_%s\n' "$machine"
  if [ "$machine" = x86_64 ]; then
    printf -- '--platform\nmanylinux2010_x86_64\n--platform\nmanylinux1_x86_64\n'
  fi
}
