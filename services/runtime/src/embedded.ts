import { mkdir } from "node:fs/promises";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { acquireLock } from "./startup.js";

export interface EmbeddedPostgres {
  /** A postgres:// URL the ordinary `pg` client connects to. */
  url: string;
  close(): Promise<void>;
}

/**
 * PostgreSQL compiled to WebAssembly (PGlite), served over the Postgres wire
 * protocol on a loopback port so the services' `pg` code runs unchanged.
 * PGlite has one session: callers share one pool with one connection (see
 * README "embedded mode").
 */
export async function startEmbeddedPostgres(dataDir?: string): Promise<EmbeddedPostgres> {
  // PGlite makes only the last folder of the path; a fresh clone has no .data yet.
  if (dataDir) await mkdir(path.dirname(dataDir), { recursive: true });
  // Two processes on one data folder each keep their own view and overwrite the other's: money lost.
  const release = dataDir ? acquireLock(`${path.resolve(dataDir)}.lock`, `The data folder ${dataDir}`) : () => undefined;
  let db: PGlite | undefined;
  let server: PGLiteSocketServer;
  try {
    db = await PGlite.create(dataDir ?? "memory://");
    server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 });
    await server.start();
  } catch (err) {
    // Its socket server failed: the database it opened is closed before the folder is released to another process.
    await db?.close().catch(() => undefined);
    release();
    throw err;
  }
  const opened = db;
  const conn = server.getServerConn(); // "127.0.0.1:PORT"
  return {
    url: `postgres://postgres@${conn}/postgres?sslmode=disable`,
    close: async () => {
      await server.stop();
      await opened.close();
      release();
    },
  };
}
