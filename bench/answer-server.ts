// The outside-API client benches' other side: a loopback HTTP server in a process of its own (as
// Safaricom's and the SMS provider's are not ours), answering every request with one JSON body over
// kept connections. A bench forks its own file with "--server" and calls serveAnswer there.
import { fork, type ChildProcess } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** In the forked process: serves `answer` to every request, says its port to the bench, ends with it. */
export async function serveAnswer(answer: string): Promise<void> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(answer);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  process.send!((server.address() as AddressInfo).port);
  process.on("disconnect", () => process.exit(0));
}

/** Forks `file` with "--server"; its port once it listens. `server.disconnect()` ends it. */
export async function forkAnswerServer(file: string): Promise<{ server: ChildProcess; port: number }> {
  const server = fork(file, ["--server"], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const port = await new Promise<number>((r) => server.once("message", (p: number) => r(p)));
  return { server, port };
}
