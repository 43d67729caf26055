// Throwaway PostgreSQL, Redis and NATS (JetStream) servers for tests, started
// from local binaries on free loopback ports in a temp folder and stopped by
// process id. Nothing here talks to anything but 127.0.0.1.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { appendFile, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../free-port.js";

export { freePort };

const execFileAsync = promisify(execFile);

export interface TestServer {
  url: string;
  /** The current process id (a restart changes it). */
  pid: number;
  stop(): Promise<void>;
  /**
   * Stops the server (PostgreSQL: fast shutdown, disconnecting its clients; the others: SIGTERM),
   * keeps it down for `downMs`, then starts it again on the same port with the same data.
   */
  restart(options?: { downMs?: number }): Promise<void>;
}


/** Finds a server binary on PATH or in its usual Debian folders, or says which package to install. */
export function findBinary(name: string, debianPackage: string, extraDirs: string[] = []): string {
  for (const dir of [...(process.env.PATH ?? "").split(":"), ...extraDirs]) {
    const candidate = path.join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found. Install it with: sudo apt-get install ${debianPackage}`);
}

function postgresDirs(): string[] {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, "bin"));
}

async function waitForPort(port: number, child: ChildProcess, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Tried once more past the deadline: a process stalled that long (a loaded machine) still sees an open port.
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.end();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() >= deadline) throw new Error(`${what} did not open port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function signalAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise((r) => child.once("exit", r));
  process.kill(child.pid, signal);
  const timer = setTimeout(() => child.pid && child.exitCode === null && process.kill(child.pid, "SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Spawns a server, waits for its port, and returns how to stop it; shows its output if it fails. */
export async function spawnServer(
  bin: string,
  args: string[],
  port: number,
  dir: string,
  url: string,
  ids?: { uid: number; gid: number },
  restartSignal: NodeJS.Signals = "SIGTERM",
  /** Resolves once the server answers, beyond an open port (PostgreSQL refuses sessions while it starts up). */
  ready?: (child: ChildProcess) => Promise<void>,
): Promise<TestServer> {
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], ...ids });
    let output = "";
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    try {
      await waitForPort(port, child, path.basename(bin));
      await ready?.(child);
    } catch (err) {
      child.kill("SIGKILL");
      throw new Error(`${(err as Error).message}\n${output}`);
    }
    return child;
  };
  let child: ChildProcess;
  try {
    child = await launch();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const server: TestServer = {
    url,
    pid: child.pid!,
    stop: async () => {
      await signalAndWait(child, "SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
    restart: async ({ downMs = 0 } = {}) => {
      await signalAndWait(child, restartSignal);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      child = await launch();
      server.pid = child.pid!;
    },
  };
  return server;
}

/** PostgreSQL refuses to run as root; run it as the `postgres` user (or nobody) then. */
function unprivilegedIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of ["postgres", "nobody"]) {
    try {
      const uid = Number(execFileSync("id", ["-u", user]).toString().trim());
      const gid = Number(execFileSync("id", ["-g", user]).toString().trim());
      return { uid, gid };
    } catch {
      // try the next one
    }
  }
  throw new Error("running as root and no postgres or nobody user exists to run PostgreSQL as");
}

/**
 * Throwaway PostgreSQL; `durable` keeps fsync, synchronous commit and full-page writes on (benchmarks),
 * with the chart's WAL compression (charts/ttip values database.walCompression); tests turn them off.
 * `statementStats` loads pg_stat_statements (with planning time), for benches that ask where
 * PostgreSQL's time goes statement by statement; tests leave it off.
 */
export async function startPostgres(options: { durable?: boolean; statementStats?: boolean } = {}): Promise<TestServer> {
  const initdb = findBinary("initdb", "postgresql", postgresDirs());
  const postgres = findBinary("postgres", "postgresql", [path.dirname(initdb), ...postgresDirs()]);
  const dir = await mkdtemp(path.join(os.tmpdir(), "ttip-pg-"));
  const ids = unprivilegedIds();
  if (ids) await chown(dir, ids.uid, ids.gid);
  const data = path.join(dir, "data");
  // Not execFileSync: on a loaded machine initdb takes tens of seconds, and the servers started beside it wait on the event loop.
  await execFileAsync(initdb, ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"], ids ?? {});
  // In the configuration file, not on the command line: a bench's ALTER SYSTEM (postgresql.auto.conf) can still change it.
  if (options.durable) await appendFile(path.join(data, "postgresql.conf"), "wal_compression = lz4\n");
  const port = await freePort();
  const fast = options.durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"];
  const args = ["-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", ...fast, "-c", "max_connections=300"];
  if (options.statementStats) args.push("-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track_planning=on");
  // SIGINT is PostgreSQL's fast shutdown: it ends client sessions instead of waiting for them.
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return spawnServer(postgres, args, port, dir, url, ids, "SIGINT", (child) => acceptingSessions(url, child));
}

/**
 * Waits until PostgreSQL runs a query: its port opens while it is still
 * starting up, and a session opened then fails ("the database system is
 * starting up"), which on a busy machine broke the first statement of tests and benches.
 */
export async function acceptingSessions(url: string, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (err) {
      if (child.exitCode !== null) throw new Error(`postgres exited with code ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`postgres did not accept sessions within ${timeoutMs} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

export async function startRedis(): Promise<TestServer> {
  const bin = findBinary("redis-server", "redis-server");
  const dir = await mkdtemp(path.join(os.tmpdir(), "ttip-redis-"));
  const port = await freePort();
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  return spawnServer(bin, args, port, dir, `redis://127.0.0.1:${port}`);
}

export async function startNats(): Promise<TestServer> {
  const bin = findBinary("nats-server", "nats-server");
  const dir = await mkdtemp(path.join(os.tmpdir(), "ttip-nats-"));
  const port = await freePort();
  // JetStream reserves a stream's max_bytes against its store's limit, by
  // default three quarters of the free disk: the chart's 10 GiB stream would
  // not start on a machine with less than ~14 GiB free. Tests store kilobytes.
  const config = path.join(dir, "nats.conf");
  await writeFile(config, `jetstream { store_dir: ${JSON.stringify(dir)}, max_file_store: 1TB }\n`);
  return spawnServer(bin, ["-a", "127.0.0.1", "-p", String(port), "-c", config], port, dir, `nats://127.0.0.1:${port}`);
}
