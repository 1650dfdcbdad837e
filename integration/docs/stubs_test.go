package docs_test

// Stand-ins for the programs a cloud or system block calls that cannot run
// here. They are written into the session's stub directory, which is first
// on PATH for cloud and system blocks only. Each logs its arguments to
// $DOCTEST_DIR/stubs.log. What they do:
//
//   - gcloud: `config get-value project` and `projects describe` print
//     fixed values; `artifacts docker images describe IMAGE@DIGEST` prints
//     the digest; `compute scp FILE… VM:~` copies the files into that VM's
//     home ($DOCTEST_DIR/vm/VM); `compute ssh VM --command=CMD` runs CMD
//     with bash in that home (HOME set to it, the stubs on PATH), so the
//     commands a guide runs on its VMs run for real here; anything else
//     succeeds silently (it would create cloud resources).
//   - skopeo, aws: succeed silently.
//   - task image:*: the image build is covered by integration/image; it
//     writes a digest file where deploy/*/build-image.sh writes it. Other
//     tasks run the real task.
//   - sudo: runs the command (the session runs as root in its namespaces).
//   - systemd-run --unit=NAME CMD…: runs CMD in the background, its output
//     the unit's journal.
//   - journalctl -u NAME: prints that journal (-f does not follow).
//   - systemctl: daemon-reload succeeds; enable --now, start and restart
//     NAME start the unit from /etc/systemd/system/NAME.service as systemd
//     would: LoadCredential copied into $CREDENTIALS_DIRECTORY,
//     StateDirectory created under /var/lib, ExecStartPre run (a failure
//     fails the start), ExecStart in the background with its output as the
//     journal; reload sends SIGHUP; stop sends SIGTERM; is-active tells.
var stubs = map[string]string{
	"gcloud": `#!/bin/bash
echo "gcloud $*" >> "$DOCTEST_DIR/stubs.log"
args=("$@")
has() { local a; for a in "${args[@]}"; do [[ "$a" == "$1"* ]] && return 0; done; return 1; }
if [ "${1:-}" = config ] && [ "${2:-}" = get-value ]; then echo sigil-doctest; exit 0; fi
if [ "${1:-}" = projects ] && [ "${2:-}" = describe ]; then echo 123456789012; exit 0; fi
if [ "${1:-}" = artifacts ] && [ "${2:-}" = docker ] && [ "${4:-}" = describe ]; then echo "${5#*@}"; exit 0; fi
if [ "${1:-}" = compute ] && [ "${2:-}" = scp ]; then
  dest=""; files=()
  for a in "${args[@]:2}"; do
    case "$a" in
      -*) ;;
      *:*) dest="${a%%:*}" ;;
      *) files+=("$a") ;;
    esac
  done
  [ -n "$dest" ] || { echo "gcloud stub: scp without VM:path" >&2; exit 2; }
  mkdir -p "$DOCTEST_DIR/vm/$dest"
  cp "${files[@]}" "$DOCTEST_DIR/vm/$dest/"
  exit 0
fi
if [ "${1:-}" = compute ] && [ "${2:-}" = ssh ]; then
  vm="${3:-}"; cmd=""; next=0
  for a in "${args[@]:3}"; do
    if [ $next = 1 ]; then cmd="$a"; next=0; continue; fi
    case "$a" in
      --command=*) cmd="${a#--command=}" ;;
      --command) next=1 ;;
    esac
  done
  [ -n "$cmd" ] || { echo "gcloud stub: ssh without --command (interactive) is not run" >&2; exit 2; }
  mkdir -p "$DOCTEST_DIR/vm/$vm"
  cd "$DOCTEST_DIR/vm/$vm"
  HOME="$DOCTEST_DIR/vm/$vm" exec bash -c "$cmd"
fi
exit 0
`,
	"skopeo": `#!/bin/bash
echo "skopeo $*" >> "$DOCTEST_DIR/stubs.log"
cat > /dev/null
exit 0
`,
	"aws": `#!/bin/bash
echo "aws $*" >> "$DOCTEST_DIR/stubs.log"
exit 0
`,
	"task": `#!/bin/bash
echo "task $*" >> "$DOCTEST_DIR/stubs.log"
case "${1:-}" in
  image:enclave|image:sigil|image)
    mkdir -p bin/image
    for n in sigil-enclave sigil; do
      echo "sha256:$(printf '%s' "$n" | sha256sum | cut -d' ' -f1)" > "bin/image/$n.digest"
    done
    echo "image build covered by integration/image: digests written to bin/image" >&2
    exit 0 ;;
esac
PATH="$DOCTEST_REALPATH" exec task "$@"
`,
	"sudo": `#!/bin/bash
echo "sudo $*" >> "$DOCTEST_DIR/stubs.log"
while [[ "${1:-}" == -* ]]; do shift; done
exec "$@"
`,
	"systemd-run": `#!/bin/bash
echo "systemd-run $*" >> "$DOCTEST_DIR/stubs.log"
unit=""
while [[ "${1:-}" == -* ]]; do
  case "$1" in --unit=*) unit="${1#--unit=}" ;; esac
  shift
done
[ -n "$unit" ] || unit="run-doctest"
mkdir -p "$DOCTEST_DIR/journal"
nohup "$@" > "$DOCTEST_DIR/journal/$unit.log" 2>&1 &
echo $! > "$DOCTEST_DIR/journal/$unit.pid"
echo "Running as unit: $unit.service"
`,
	"journalctl": `#!/bin/bash
echo "journalctl $*" >> "$DOCTEST_DIR/stubs.log"
unit=""
while [ $# -gt 0 ]; do
  case "$1" in -u) unit="$2"; shift ;; -u*) unit="${1#-u}" ;; esac
  shift
done
unit="${unit%.service}"
cat "$DOCTEST_DIR/journal/$unit.log" 2>/dev/null || true
`,
	"systemctl": `#!/bin/bash
echo "systemctl $*" >> "$DOCTEST_DIR/stubs.log"
mkdir -p "$DOCTEST_DIR/journal"
start_unit() {
  local name="${1%.service}" unit="/etc/systemd/system/${1%.service}.service"
  [ -f "$unit" ] || { echo "systemctl stub: no unit $unit" >&2; return 1; }
  local cred credname credpath state pre start
  export CREDENTIALS_DIRECTORY="$DOCTEST_DIR/credentials/$name"
  mkdir -p "$CREDENTIALS_DIRECTORY"
  while IFS= read -r cred; do
    credname="${cred%%:*}"; credpath="${cred#*:}"
    cp "$credpath" "$CREDENTIALS_DIRECTORY/$credname"
  done < <(sed -n 's/^LoadCredential=//p' "$unit")
  state="$(sed -n 's/^StateDirectory=//p' "$unit")"
  [ -z "$state" ] || mkdir -p -m 0700 "/var/lib/$state"
  while IFS= read -r pre; do
    eval "$pre" >> "$DOCTEST_DIR/journal/$name.log" 2>&1 || { echo "systemctl stub: ExecStartPre failed: $pre" >&2; cat "$DOCTEST_DIR/journal/$name.log" >&2; return 1; }
  done < <(sed -n 's/^ExecStartPre=//p' "$unit")
  start="$(sed -n 's/^ExecStart=//p' "$unit")"
  ( eval "exec $start" ) >> "$DOCTEST_DIR/journal/$name.log" 2>&1 &
  echo $! > "$DOCTEST_DIR/journal/$name.pid"
}
pid_of() { cat "$DOCTEST_DIR/journal/${1%.service}.pid" 2>/dev/null; }
cmd="${1:-}"; shift || true
case "$cmd" in
  daemon-reload) exit 0 ;;
  enable)
    [ "${1:-}" = --now ] && { shift; start_unit "$1"; }
    exit $? ;;
  start|restart)
    [ "$cmd" = restart ] && { p=$(pid_of "$1"); [ -z "$p" ] || kill "$p" 2>/dev/null; sleep 1; }
    start_unit "$1" ;;
  reload) kill -HUP "$(pid_of "$1")" ;;
  stop) kill "$(pid_of "$1")" ;;
  is-active) kill -0 "$(pid_of "$1")" 2>/dev/null && echo active || { echo inactive; exit 3; } ;;
  status) kill -0 "$(pid_of "$1")" 2>/dev/null && echo "active (running)" || { echo inactive; exit 3; } ;;
  *) exit 0 ;;
esac
`,
}
