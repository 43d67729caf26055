// stripe-mock (Stripe's official API mock, a Go binary installed with
// `go install github.com/stripe/stripe-mock@STRIPE_MOCK_VERSION`) started like
// the other test servers: free loopback ports, a temp folder, stopped by pid.
// It checks request shapes against Stripe's OpenAPI spec; it keeps no state.
import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { findBinary, freePort, spawnServer, type TestServer } from "./servers.js";

/** The version the CI installs; the tests print what the binary reports. */
export const STRIPE_MOCK_VERSION = "v0.203.0";

function goBinDirs(): string[] {
  const dirs = [path.join(os.homedir(), "go", "bin")];
  try {
    dirs.unshift(path.join(execFileSync("go", ["env", "GOPATH"], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(), "bin"));
  } catch {
    // no Go on PATH: only the usual folder
  }
  return dirs;
}

export async function startStripeMock(): Promise<TestServer & { version: string }> {
  let bin: string;
  try {
    bin = findBinary("stripe-mock", "(none)", goBinDirs());
  } catch {
    throw new Error(`stripe-mock not found. Install it with: go install github.com/stripe/stripe-mock@${STRIPE_MOCK_VERSION}`);
  }
  const version = execFileSync(bin, ["-version"]).toString().trim();
  const dir = await mkdtemp(path.join(os.tmpdir(), "ttip-stripe-mock-"));
  const [http, https] = [await freePort(), await freePort()];
  // Both listeners on loopback and free ports: its default HTTPS port is fixed and shared.
  const server = await spawnServer(bin, ["-http-addr", `127.0.0.1:${http}`, "-https-addr", `127.0.0.1:${https}`], http, dir, `http://127.0.0.1:${http}`);
  return Object.assign(server, { version });
}
