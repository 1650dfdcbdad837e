// Package docs runs the documentation: every fenced block of README.md and
// docs/*.md that a reader could run or load is run or loaded by its tests,
// so a command, a configuration or a guide step that stops working fails CI.
// Each shell and YAML block says how it is checked in an HTML comment on the
// line above its fence (invisible when rendered):
//
//	<!-- doctest: run -->              run, in order, in the file's session
//	<!-- doctest: daemon URL [stop] -->  run in the background; the session
//	                                   waits until URL answers 2xx (then,
//	                                   with stop, interrupts it as Ctrl-C)
//	<!-- doctest: cloud -->            needs Google Cloud or AWS: run with
//	                                   stand-ins for gcloud, skopeo, aws
//	                                   (`gcloud compute ssh --command` and
//	                                   `scp` run on a local "VM"), so every
//	                                   variable must be defined and every
//	                                   command on the daemon's side works
//	<!-- doctest: system -->           installs into the system: run in a
//	                                   private mount namespace (/usr/local/bin,
//	                                   /etc/sigil, /etc/systemd/system and
//	                                   /var/lib/sigil are empty tmpfs), with a
//	                                   systemctl that starts a unit as systemd
//	                                   would (credentials, ExecStartPre, then
//	                                   ExecStart)
//	<!-- doctest: bench -->            `go test -bench` commands: each named
//	                                   benchmark must exist (go test -list)
//	<!-- doctest: record -->           a past measurement (a build of another
//	                                   commit, minutes of load): parsed
//	                                   (bash -n), and every script, package
//	                                   and program it names must exist
//	<!-- doctest: example PROGRAM… -->  for programs not installed here
//	                                   (octez-client, docker): parsed, each
//	                                   line runs one of them
//	<!-- doctest: covered-by DIR Test -->  run by that test (which must
//	                                   exist); covered-by .ci/run: .ci/run
//	                                   runs each command
//	<!-- doctest: config -->           a whole configuration: `sigil config
//	                                   check` accepts it
//	<!-- doctest: config-fragment -->  part of one: merged into a minimal
//	                                   configuration, then checked (both
//	                                   take env=NAME=VALUE, and
//	                                   client-key=NAME: sigil
//	                                   enclave-client-key makes
//	                                   ${BASE_DIR}/NAME first)
//	<!-- doctest: yaml -->             another program's YAML: parsed
//
// JSON blocks are parsed; other blocks (text, go) are not run. A shell or
// YAML block without a directive fails the test: a new block is either run
// or says why not. A file's runnable blocks share one bash session (set -eu,
// pipefail; variables carry from block to block) in a copy of the repository,
// inside a private network and mount namespace when the test runs as root
// (fixed ports and addresses such as the guide's 10.20.0.10 are then free),
// skipped with a message otherwise (failed in CI). The package has no
// non-test code beyond this comment.
package docs
