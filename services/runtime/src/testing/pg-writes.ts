import type { Socket } from "node:net";
import type pg from "pg";

/**
 * Counts the writes to a pg client's socket from now on: the round trips it
 * makes (pg corks one statement's messages into one write; withTransaction's
 * BEGIN rides in its first statement's). `counting` decides, write by write,
 * whether one counts. `stop` puts the socket back as it was.
 */
export function countWrites(client: pg.ClientBase, counting: () => boolean = () => true): { writes: () => number; stop: () => void } {
  const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
  let writes = 0;
  const { write, uncork } = socket;
  socket.write = function (this: Socket, ...args: unknown[]) {
    if (!this.writableCorked && counting()) writes++;
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof socket.write;
  socket.uncork = function (this: Socket) {
    if (this.writableCorked === 1 && counting()) writes++;
    uncork.call(this);
  };
  return { writes: () => writes, stop: () => void Object.assign(socket, { write, uncork }) };
}
