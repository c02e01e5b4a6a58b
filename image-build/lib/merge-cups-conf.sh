#!/usr/bin/env bash
# Merge a systemd/cups/*.appliance snippet into a CUPS config file (CUPS has no include).
#
#   lib/merge-cups-conf.sh SNIPPET CONFIG
#
# For each directive in SNIPPET, the first top-level line of CONFIG that sets it is
# replaced by the snippet's line (later ones are commented out), or the line is appended.
# Listen lines: the snippet's are the only ones kept (others are commented out, as are
# Port lines), so cupsd listens on exactly what the snippet names. Lines inside <...>
# blocks are left alone. Directive names compare case-insensitively, as cupsd does.
set -euo pipefail
snippet="${1:?usage: merge-cups-conf.sh SNIPPET CONFIG}"
config="${2:?usage: merge-cups-conf.sh SNIPPET CONFIG}"

merged="$(mktemp "${config}.XXXXXX")"
trap 'rm -f "$merged"' EXIT
awk '
  function key(line,   w) { w = line; sub(/^[ \t]+/, "", w); sub(/[ \t].*$/, "", w); return tolower(w) }
  function trim(line) { sub(/^[ \t]+/, "", line); sub(/[ \t]+$/, "", line); return line }
  FNR == NR {
    line = trim($0)
    if (line == "" || line ~ /^#/) next
    k = key(line)
    if (k == "listen") { listen[line] = 1; listen_order[++nl] = line; next }
    if (!(k in want)) order[++nw] = k
    want[k] = line
    next
  }
  {
    line = trim($0)
    if (line ~ /^<\//) { depth--; print; next }
    if (line ~ /^</) { depth++; print; next }
    if (depth > 0 || line == "" || line ~ /^#/) { print; next }
    k = key(line)
    if (k == "port" || (k == "listen" && !(line in listen))) { print "# (appliance image) " $0; next }
    if (k == "listen") { seen_listen[line] = 1; print; next }
    if (k in want) {
      if (k in done) { print "# (appliance image) " $0 } else { print want[k]; done[k] = 1 }
      next
    }
    print
  }
  END {
    header = 0
    for (i = 1; i <= nw; i++) if (!(order[i] in done)) {
      if (!header++) print "# Added by the appliance image (systemd/cups/):"
      print want[order[i]]
    }
    for (i = 1; i <= nl; i++) if (!(listen_order[i] in seen_listen)) {
      if (!header++) print "# Added by the appliance image (systemd/cups/):"
      print listen_order[i]
    }
  }
' "$snippet" "$config" > "$merged"
chmod --reference="$config" "$merged"
chown --reference="$config" "$merged"
mv "$merged" "$config"
trap - EXIT
