// Run by embedded-partial-start.test.ts in a process of its own: starts the
// embedded platform with its gateway's port taken (argv[2]) on a PGlite data folder
// (argv[3]: a copy of one initialized once, made by the parent), so the start fails
// after PGlite, the simulators and the services listen. Reports on stdout (one
// JSON line) the error and every port this process listened on, each checked
// closed, then returns without process.exit: the process ends only if nothing
// the failed start made is left holding it.
import net from "node:net";
import { startEmbedded } from "../src/embedded.js";

const listened: Array<{ server: net.Server; port: number }> = [];
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
  this.once("listening", () => {
    const address = this.address();
    if (address && typeof address === "object") listened.push({ server: this, port: address.port });
  });
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof listen;

/** Whether something still accepts connections on the loopback port. */
const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });

let error = "";
try {
  await startEmbedded({ DATA_DIR: process.argv[3], PORT: process.argv[2], WEB: "off", PARTNER_SANDBOX: "off", LOG_LEVEL: "silent" });
} catch (err) {
  error = String((err as Error).message);
}
const servers = [];
for (const { server, port } of listened) servers.push({ port, listening: server.listening, accepts: await accepts(port) });
process.stdout.write(`${JSON.stringify({ error, servers })}\n`);
// Unref'd: names what still holds the process, should anything (the parent then kills it).
setTimeout(() => process.stderr.write(`still held by: ${process.getActiveResourcesInfo().join(", ")}\n`), 5_000).unref();
