// A proxy in front of a provider's simulator (Daraja, Stripe) that holds the requests a test picks until it lets
// each go: a reconciliation step that outlives its lease, however fast or slow the machine. Every other request
// passes straight through, as the provider's real HTTP.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { eventually } from "./setup.js";

/** What the proxy tells about a request before forwarding it. */
export interface ProxiedRequest {
  method: string;
  path: string;
  body: string;
}

export interface HoldingProxy {
  /** The base URL to configure in place of the simulator's. */
  url: string;
  /** Requests held and not yet let go. */
  held(): number;
  /** Lets the oldest held request go on to the simulator. */
  releaseOldest(): void;
  /** Loses the oldest held request on its way: its connection is cut, the simulator never sees it. */
  dropOldest(): void;
  /** Lets every held request go, then stops. */
  close(): Promise<void>;
}

/**
 * `answers`: a held request goes on to the simulator at once and its answer is what is held (the provider acted on
 * it; its caller waits): let go, the answer is passed on; dropped, the caller's connection is cut, no answer.
 */
export async function startHoldingProxy(target: string, holds: (r: ProxiedRequest) => boolean, { answers = false } = {}): Promise<HoldingProxy> {
  const upstream = new URL(target);
  const waiting: ((forward: boolean) => void)[] = [];
  const held = () => new Promise<boolean>((resolve) => waiting.push(resolve));
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const hold = holds({ method: req.method ?? "GET", path: req.url ?? "/", body: body.toString("utf8") });
    if (hold && !answers && !(await held())) return void res.destroy();
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      async (answer) => {
        if (hold && answers) {
          const read: Buffer[] = [];
          for await (const chunk of answer) read.push(chunk as Buffer);
          if (!(await held())) return void res.destroy();
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          return void res.end(Buffer.concat(read));
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on("error", () => res.destroy());
    out.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: () => waiting.length,
    releaseOldest: () => waiting.shift()?.(true),
    dropOldest: () => waiting.shift()?.(false),
    close: async () => {
      for (const release of waiting.splice(0)) release(true);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Two reconciliation passes, both held at the proxy: each finished in turn, its request let go first. */
export interface HeldPasses {
  finishFirst(): Promise<void>;
  finishSecond(): Promise<void>;
}

/**
 * Runs `pass` until its request is held, then again (another replica's pass, once the first's lease lapsed) until
 * that one is held too: a step that outlived its lease, with the row leased again meanwhile.
 */
export async function twoPassesHeld(proxy: HoldingProxy, pass: () => Promise<unknown>, what: string): Promise<HeldPasses> {
  const first = pass();
  await eventually(async () => proxy.held() === 1, `the first pass's ${what} held`);
  const second = pass();
  await eventually(async () => proxy.held() === 2, `the second pass's ${what} held`);
  const finish = async (run: Promise<unknown>) => {
    proxy.releaseOldest();
    await run;
  };
  return { finishFirst: () => finish(first), finishSecond: () => finish(second) };
}
