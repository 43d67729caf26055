// The container image runs compiled JavaScript and ships no development code.
// There is no container engine here, so the proof is the build the Dockerfile
// copies (platform/build.ts): its module graph, its tree, and the bundle run by
// plain node (no tsx). The development tree is the control: the same checks
// find the simulators and their private key there, so they can fail.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DEV_ONLY, type BuildResult } from "../build.js";
import { builtPlatform, unhashedInputs } from "./built-platform.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

/** Runs a bundle as the image does: plain node, a clean environment. */
function runBundle(entry: string, args: string[], env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [entry, ...args], { env: env as NodeJS.ProcessEnv, cwd: path.dirname(entry), timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

/** A file that is or holds development-only material. */
function devOnlyFiles(dir: string): string[] {
  return filesUnder(dir).filter((f) => {
    const rel = path.relative(dir, f).split(path.sep).join("/");
    if (/pglite|simulator|testdata|\.pem$/.test(rel)) return true;
    return /\.(m?js|json|sql|pem)$/.test(f) && readFileSync(f, "utf8").includes("PRIVATE KEY-----");
  });
}

describe("the image's build: compiled JavaScript, no PGlite, simulators or their keys", { timeout: 120_000 }, () => {
  let built: BuildResult;

  before(async () => {
    built = await builtPlatform();
  });

  test("the production entry's module graph holds every service and no development-only module", () => {
    const inputs = built.productionInputs.map((p) => p.split(path.sep).join("/"));
    for (const service of ["auth", "payment", "qr", "wallet", "notification", "analytics", "venue"]) {
      assert.ok(inputs.some((p) => p.startsWith(`services/${service}/src/index.ts`)), `${service} is in the bundle`);
    }
    assert.ok(inputs.some((p) => p.startsWith("gateway/src/")), "the gateway is in the bundle");
    const bundled = inputs.filter((p) => !p.startsWith("left-out:"));
    assert.deepEqual(bundled.filter((p) => DEV_ONLY.test(p)), [], "no PGlite, simulator, test helper or test data");
    assert.deepEqual(bundled.filter((p) => /@electric-sql|pglite/i.test(p)), []);
    // The two in-process simulators (auth's SMS, notification's providers) are reached only by
    // dynamic imports, which the build replaced by a module that throws.
    const leftOut = inputs.filter((p) => p.startsWith("left-out:")).map((p) => path.relative(root, p.slice("left-out:".length)));
    assert.deepEqual(leftOut.sort(), ["services/auth/src/sms-simulator.ts", "services/notification/src/simulator.ts"]);
  });

  test("every bundled module is among the sources the shared build is hashed over (a change elsewhere would run a stale build)", () => {
    assert.deepEqual(unhashedInputs(built.productionInputs), []);
  });

  test("the production tree holds no development-only file or private key; the development tree, the control, does", () => {
    assert.deepEqual(devOnlyFiles(built.productionDir), []);
    const files = filesUnder(built.productionDir).map((f) => path.relative(built.productionDir, f).split(path.sep).join("/"));
    assert.ok(files.includes("ttip.mjs"));
    assert.ok(files.includes("admin/index.html") && files.some((f) => /^admin\/assets\/.+\.js$/.test(f)), "the admin console's build, which the gateway serves");
    for (const service of ["runtime", "auth", "payment", "qr", "wallet", "notification", "analytics", "venue"]) {
      assert.ok(files.some((f) => f.startsWith(`migrations/${service}/`) && f.endsWith(".sql")), `${service}'s migrations are beside the bundle`);
    }
    // Only the one native package beside the bundle: nothing else of node_modules.
    assert.deepEqual([...new Set(files.filter((f) => f.startsWith("node_modules/")).map((f) => f.split("/").slice(1, 3).join("/")))].sort().filter((p) => !p.startsWith("@node-rs/argon2")), []);
    assert.deepEqual(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), [], "no TypeScript to run in the image");
    const control = devOnlyFiles(built.developmentDir).map((f) => path.relative(built.developmentDir, f));
    assert.ok(control.some((f) => f.endsWith("simulator-key.pem")), `the development tree's simulator key is found: ${control}`);
  });

  test("plain node runs the bundle: usage for a role it lacks, the configuration error for a role it has", async () => {
    const env = { PATH: process.env.PATH ?? "", NODE_ENV: "production" };
    const usage = await runBundle(built.productionEntry, ["embedded"], env);
    assert.equal(usage.code, 2, usage.output);
    assert.match(usage.output, /usage: ttip <auth\|payment\|qr\|wallet\|notification\|analytics\|venue\|gateway\|migrate\|setup-token>/);
    const simulators = await runBundle(built.productionEntry, ["simulators"], env);
    assert.equal(simulators.code, 2, simulators.output);
    // Every module of the graph loads (a missing file or package would fail before configuration).
    for (const role of ["auth", "payment", "gateway"]) {
      const run = await runBundle(built.productionEntry, [role], env);
      assert.equal(run.code, 78, `${role}: ${run.output}`);
      assert.match(run.output, /INTERNAL_SIGNING_KEY: is required/);
    }
  });

  test("the Dockerfile's production stage copies only the production tree and runs it with node", () => {
    const dockerfile = readFileSync(path.join(root, "deploy/Dockerfile"), "utf8");
    const stages = dockerfile.split(/^FROM /m).slice(1);
    const last = stages.at(-1)!;
    assert.match(last.split("\n")[0], /^node:24[-.\w]* AS production$/, "the last (default) stage is production, on Node 24");
    const copies = last.split("\n").filter((l) => l.startsWith("COPY"));
    assert.deepEqual(copies, ["COPY --from=build /src/platform/dist/ttip /app"]);
    // No --enable-source-maps: the map parsed whole, ~60 MiB per process (bench/image-source-maps.ts).
    assert.match(last, /^ENTRYPOINT \["node", "--max-semi-space-size=32", "\/app\/ttip\.mjs"\]$/m);
    assert.doesNotMatch(last, /tsx/);
    assert.match(last, /^USER 10001:10001$/m);
  });
});
