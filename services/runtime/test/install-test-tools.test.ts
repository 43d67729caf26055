// make test-tools (testing/install-test-tools.sh) on a new machine: run from a copy of the repository's
// layout whose PATH holds only the basic commands and stand-ins (apt-get records what it is asked to
// install; go, python3, the servers and the kube and SDK builds are stubs), as Debian's defaults would.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("../src/testing/install-test-tools.sh", import.meta.url));
/** What the script itself runs from a Debian base system (coreutils, sed, grep and the like). */
const BASICS = ["bash", "sh", "env", "dirname", "cat", "sed", "sort", "head", "printf", "mkdir", "mktemp", "rm", "ls", "grep", "cut", "sha256sum", "chmod"];
/** The servers and tools a machine ready for the tests has, as do-nothing stand-ins. */
const READY = ["initdb", "redis-server", "nats-server", "chromium", "chromium-headless-shell", "etcd", "openssl", "helm", "stripe-mock", "kube-score", "promtool"];

interface Machine {
  /** Commands missing from the stand-ins above. */
  missing?: string[];
  /** `go env GOVERSION`, or no Go at all. */
  go?: string;
  /** Whether python3 can make a venv (Debian: python3-venv installed). */
  venv?: boolean;
  /** Whether the chart test's control plane builds. */
  kubeBuilds?: boolean;
}

function runOn(m: Machine): { code: number | null; out: string; apt: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-test-tools-"));
  try {
    const bin = path.join(dir, "bin");
    const repo = path.join(dir, "repo");
    const testing = path.join(repo, "services/runtime/src/testing");
    for (const d of [bin, testing, path.join(repo, "deploy/kube-harness"), path.join(repo, "sdk/go")]) mkdirSync(d, { recursive: true });
    copyFileSync(script, path.join(testing, "install-test-tools.sh"));
    // Written as new files (flag wx): never through a link to the machine's own command.
    const exe = (file: string, body: string) => (writeFileSync(file, `#!/bin/sh\n${body}\n`, { flag: "wx" }), chmodSync(file, 0o755));
    for (const name of BASICS) {
      const real = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).stdout.trim();
      if (real.startsWith("/")) symlinkSync(real, path.join(bin, name));
    }
    for (const name of READY.filter((n) => !m.missing?.includes(n))) exe(path.join(bin, name), "exit 0");
    const apt = path.join(dir, "apt.txt");
    exe(path.join(bin, "apt-get"), `echo "$*" >> ${apt}`);
    exe(path.join(bin, "apt-cache"), "exit 1");
    exe(path.join(bin, "id"), 'echo 0'); // root: installs rather than asking for sudo
    exe(path.join(bin, "python3"), `case "$1" in -c) exit ${m.venv === false ? 1 : 0};; esac; echo Python 3.11.2`);
    if (m.go) exe(path.join(bin, "go"), `case "$2" in GOVERSION) echo ${m.go};; GOPATH) echo ${dir}/gopath;; esac`);
    exe(path.join(repo, "deploy/kube-harness/build.sh"), m.kubeBuilds === false ? "echo 'go build: failed' >&2; exit 1" : `echo ${dir}/kube`);
    exe(path.join(repo, "sdk/tools.sh"), `echo ${dir}/sdk`);
    const run = spawnSync(path.join(bin, "bash"), [path.join(testing, "install-test-tools.sh")], {
      env: { NODE_ENV: "test", PATH: bin, HOME: dir }, encoding: "utf8", timeout: 30_000,
    });
    let installed = "";
    try {
      installed = readFileSync(apt, "utf8");
    } catch {
      // apt-get never called
    }
    return { code: run.status, out: run.stdout + run.stderr, apt: installed };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a ready machine: nothing installed, the control plane's and SDK toolchains' folders named", () => {
  const run = runOn({ go: "go1.26.8" });
  assert.equal(run.code, 0, run.out);
  assert.equal(run.apt, "");
  assert.match(run.out, /Kubernetes control plane for the chart test in \S+\/kube\n/);
});

test("Node 24's venv and the TLS tests' openssl are installed where missing (a minimal Debian has neither)", () => {
  const run = runOn({ go: "go1.26.8", venv: false, missing: ["openssl"] });
  assert.equal(run.code, 0, run.out);
  assert.match(run.apt, /^install .*\bpython3-venv openssl$/m);
});

test("no Go, or Debian's 1.19: stops before the tests naming the Go it needs, not Debian's golang-go", () => {
  for (const go of [undefined, "go1.19.8"]) {
    const run = runOn({ go, missing: ["helm"] });
    assert.equal(run.code, 1, run.out);
    assert.match(run.out, /needs Go 1\.26 or later \(https:\/\/go\.dev\/dl; Debian 12's golang-go is 1\.19, too old\)/);
    assert.doesNotMatch(run.out, /apt-get install golang-go/);
  }
});

test("a control plane that fails to build stops it (it was printed as an empty folder, and the chart test failed later)", () => {
  const run = runOn({ go: "go1.26.8", kubeBuilds: false });
  assert.notEqual(run.code, 0, run.out);
  assert.match(run.out, /go build: failed/);
  assert.doesNotMatch(run.out, /SDK toolchains/);
});
