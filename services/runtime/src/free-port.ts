// A port nothing listens on, for a server that listens later (PORT=0, tests' servers).
import { closeSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

/**
 * Set by the test runner: a folder where each process of the run claims the ports it is given (one
 * empty file per port). A port is picked free, then bound later (a cluster's every port is chosen
 * first): two test files, or one file twice, drawing the same port meanwhile had one server's start fail.
 */
export const PORT_CLAIMS_DIR_ENV = "TTIP_PORT_CLAIMS_DIR";
/** Ports this process handed out: never twice, even outside a test run. */
const handedOut = new Set<number>();

/**
 * A free port on `host`, picked at random BELOW the kernel's ephemeral range: a port from listen(0)
 * is an ephemeral one, and a server binding port 0 or an outgoing connection of any process may take
 * it between picking and the server's bind (seen on busy machines: the gateway, started after the
 * services, found its port taken). Neither is ever given a port below the range.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const [low, high] = [10_000, ephemeralRangeStart() - 1];
  if (high - low < 1_000) throw new Error(`too few ports below the ephemeral range (${low}..${high})`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port)) continue;
    // Taken before the wait: a call running beside this one (Promise.all of several) skips it.
    handedOut.add(port);
    if ((await canListen(port, host)) && claimInRun(port)) return port;
    handedOut.delete(port);
  }
  throw new Error(`no free port on ${host} in ${low}..${high} after 100 tries`);
}

function ephemeralRangeStart(): number {
  try {
    const start = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    if (Number.isInteger(start) && start > 11_000) return start;
  } catch {
    // Not Linux: IANA's dynamic range starts at 49152.
  }
  return 49_152;
}

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** Whether no other process of this run was given `port`: claims it if so (creating its file is atomic). */
function claimInRun(port: number): boolean {
  const dir = process.env[PORT_CLAIMS_DIR_ENV];
  if (!dir) return true;
  try {
    closeSync(openSync(path.join(dir, String(port)), "wx"));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}
