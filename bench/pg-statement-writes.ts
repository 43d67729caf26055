// Does a statement's protocol messages sent as one buffer cost less than pg's corked writes? pg
// writes each message (Parse, Bind, Describe, Execute, Sync; the runtime's pipelined BEGIN and
// COMMIT) to the corked socket and the uncork hands them to one writev; here the other way holds
// them while corked and writes them joined (Buffer.concat) in one write. Both are one system call
// per statement. Two pools of the runtime's createPool in this process, one with the joined
// writes, in alternated blocks: a named statement reading a 14-column row, and a transaction of a
// read and an update carrying its COMMIT (withTransaction, commitWith). Prints this process's CPU
// per operation and the ratio joined / corked.
// Measured (20 blocks of 2,000, load 14-15, two runs): 72.3 -> 76.6 and 80.0 -> 92.0 us, ratios
// 1.06 and 1.15: the copy costs more than the writev's bookkeeping saves, so pg's corked writes stay.
//   node --import tsx bench/pg-statement-writes.ts [blocks=20] [operations per block=2000] [concurrency=8]
import type { Socket } from "node:net";
import os from "node:os";
import { commitWith, createPool, withTransaction, type Pool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { createTipsTable, READ_TIP } from "./pg-tips-table.js";

const blocks = Number(process.argv[2] ?? 20);
const perBlock = Number(process.argv[3] ?? 2_000);
const concurrency = Number(process.argv[4] ?? 8);

/** `pool` whose connections hold what is written while corked and write it joined at the uncork. */
function joinedWrites(pool: Pool): Pool {
  pool.on("connect", (client) => {
    const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
    const { write, cork, uncork } = socket;
    let held: Uint8Array[] | undefined;
    socket.cork = function (this: Socket) {
      if (held) return cork.call(this);
      held = [];
    };
    socket.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
      if (held && rest.length === 0 && chunk instanceof Uint8Array) {
        held.push(chunk);
        return true;
      }
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof socket.write;
    socket.uncork = function (this: Socket) {
      const chunks = held;
      held = undefined;
      if (!chunks) return uncork.call(this);
      if (chunks.length) write.call(this, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    };
  });
  return pool;
}

const pg = await startPostgres({ durable: false });
const ways: [string, Pool][] = [
  ["corked", createPool(pg.url, { max: concurrency })],
  ["joined", joinedWrites(createPool(pg.url, { max: concurrency }))],
];
const ROWS = 64;

/** This process's CPU us per operation over one block. */
async function block(pool: Pool, ids: string[]): Promise<number> {
  let next = 0;
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < perBlock; i = next++) {
        const id = ids[i % ROWS];
        if (i % 2) await pool.query(READ_TIP, [id]);
        else {
          await withTransaction(pool, async (tx) => {
            await tx.query("SELECT status FROM tips WHERE tip_id = $1", [id]);
            await commitWith(tx, "UPDATE tips SET rating = $2 WHERE tip_id = $1", [id, i % 5]);
          });
        }
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / perBlock;
}

try {
  const ids = await createTipsTable(ways[0][1], ROWS);
  for (const [, pool] of ways) await block(pool, ids); // warm-up: every connection opened, the statements prepared
  const us = new Map<string, number[]>(ways.map(([name]) => [name, []]));
  for (let b = 0; b < blocks; b++) for (const [name, pool] of b % 2 ? [...ways].reverse() : ways) us.get(name)!.push(await block(pool, ids));
  const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
  const [corked, joined] = ways.map(([name]) => median(us.get(name)!));
  console.log(`${blocks} blocks of ${perBlock} operations per way, concurrency ${concurrency}; median CPU per operation: corked ${corked.toFixed(1)} us, joined ${joined.toFixed(1)} us (ratio ${(joined / corked).toFixed(3)}); load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
} finally {
  for (const [, pool] of ways) await pool.end();
  await pg.stop();
}
