// A port nothing listens on, for a server that listens later (PORT=0, tests' servers).
import { readFileSync } from "node:fs";
import net from "node:net";

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
    if (await canListen(port, host)) return port;
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
