// Package e2e holds the system tests: the real backend and BFF binaries
// (built once per test binary by the harness, package stack, or taken from
// EXPORTSTREAM_BIN_DIR), Redis where a test says so, exercised over HTTP as
// browsers and operators meet them: restarts, kill -9 and SIGTERM, full and
// read-only disks, scaled-out replicas and BFFs, hostile clients, and the
// soak (TestSoak; make soak).
package e2e
