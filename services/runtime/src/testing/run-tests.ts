// `make test`: starts throwaway PostgreSQL, Redis and NATS JetStream, runs
// every *.test.ts with node's test runner against them, and stops them.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startNats, startPostgres, startRedis, type TestServer } from "./servers.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const SEARCHED = ["proto", "services", "gateway", "platform", "charts", "apps", "sdk"];

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...testFiles(full));
    else if (name.endsWith(".test.ts")) out.push(full);
  }
  return out;
}

const only = process.argv.slice(2);
const files = only.length
  ? only.map((f) => path.resolve(f))
  : SEARCHED.flatMap((d) => testFiles(path.join(root, d))).sort();

// `make test` names the Node it means to test on (24, the image's): a run on another one is refused, not passed.
const wantedMajor = process.env.TTIP_NODE_MAJOR;
if (wantedMajor && process.versions.node.split(".")[0] !== wantedMajor) {
  console.error(`TTIP_NODE_MAJOR=${wantedMajor} but this is node ${process.version}`);
  process.exit(1);
}
console.log(`node ${process.version}: ${files.length} test files`);

const servers: TestServer[] = [];
const reportDir = mkdtempSync(path.join(os.tmpdir(), "ttip-test-report-"));
const tapFile = path.join(reportDir, "report.tap");
let exitCode = 1;
try {
  // The platform's tests serve the web app: build it once here (reused until its
  // sources change) rather than in parallel test files.
  const { ensureWebBuild } = await import("@ttip/web");
  await ensureWebBuild((line) => console.log(line));
  const [pg, redis, nats] = await Promise.all([startPostgres(), startRedis(), startNats()]);
  servers.push(pg, redis, nats);
  console.log(`test servers: postgres pid ${pg.pid}, redis pid ${redis.pid}, nats pid ${nats.pid}`);
  const child = spawn(
    process.execPath,
    [
      // Node applies the timeout to each file as a whole too: the chart's cluster test
      // (a Kubernetes control plane, install, upgrade, rollback) takes about 3 minutes
      // on two busy cores; a hung test still fails within 6.
      "--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=360000",
      "--test-reporter=spec", "--test-reporter-destination=stdout",
      "--test-reporter=tap", `--test-reporter-destination=${tapFile}`,
      ...files,
    ],
    {
      cwd: root,
      stdio: "inherit",
      // Services the tests start in-process may generate a development QR signing key (a pod may not),
      // and send partner webhooks to receivers on loopback (the sandbox's setting; never production's).
      env: { ...process.env, TEST_DATABASE_URL: pg.url, TEST_REDIS_URL: redis.url, TEST_NATS_URL: nats.url, QR_ALLOW_DEV_SIGNING_KEY: "true", AUTH_WEBHOOK_ALLOW_LOOPBACK: "true" },
    },
  );
  const stopChild = () => child.kill("SIGTERM");
  process.once("SIGINT", stopChild);
  process.once("SIGTERM", stopChild);
  exitCode = await new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? 1)));
  // The closing line CI reads, from the TAP summary of all files together.
  const tap = readFileSync(tapFile, "utf8");
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, "m").exec(tap)?.[1] ?? 0);
  console.log(`${count("pass")} passed, ${count("fail") + count("cancelled")} failed`);
} catch (err) {
  console.error((err as Error).message);
} finally {
  await Promise.allSettled(servers.map((s) => s.stop()));
  rmSync(reportDir, { recursive: true, force: true });
}
process.exit(exitCode);
