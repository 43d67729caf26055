// What the outside-API client costs per call beyond the socket's own work: the runtime's
// httpRequest (its own HTTP/1.1 exchange on kept sockets) against a bare keep-alive socket per caller
// (the same request head and body written in one piece, a Content-Length answer parsed by hand;
// no pool, no timeout classes, no chunked answers: a floor, not a client), the same
// Africa's-Talking-shaped SMS request to the same loopback server in a process of its own,
// rounds alternated. Prints the client's CPU us per request and the bare one as a ratio.
// Both make one write and one read per call, so the difference is the client's own (its pool,
// timeout, answer reader and failure classes): what is left to take off each SMS notification
// sends and each Daraja call payment makes.
//   node --import tsx bench/http-bare-socket.ts [requests per round=3000] [rounds=5]
import net from "node:net";
import { fileURLToPath } from "node:url";
import { httpRequest } from "@ttip/runtime";
import { forkAnswerServer, serveAnswer } from "./answer-server.js";

const answer = JSON.stringify({ SMSMessageData: { Message: "Sent to 1/1 Total Cost: KES 0.8000", Recipients: [{ statusCode: 101, number: "+254712345678", status: "Success", cost: "KES 0.8000", messageId: "ATXid_0192f3a17c2e7b4d9e8f0a1b2c3d4e5f" }] } });
if (process.argv[2] === "--server") {
  await serveAnswer(answer);
} else {
  const { server, port } = await forkAnswerServer(fileURLToPath(import.meta.url));
  const url = new URL(`http://127.0.0.1:${port}/version1/messaging`);
  const body = new URLSearchParams({ username: "sandbox", to: "+254712345678", message: "You received a tip of KES 150.00 from 2547******11. KES 142.50 is yours after fees." }).toString();
  const headers = { apiKey: "key", accept: "application/json", "content-type": "application/x-www-form-urlencoded" };
  /** One kept socket per concurrent caller, one request at a time on it. */
  class Bare {
    private sock!: net.Socket;
    private buf = "";
    private wait?: (answer: string) => void;

    async open() {
      this.sock = net.connect(port, "127.0.0.1");
      this.sock.setNoDelay(true);
      this.sock.setEncoding("latin1");
      await new Promise((r) => this.sock.once("connect", r));
      this.sock.on("data", (d: string) => this.data(d));
    }

    close() {
      this.sock.destroy();
    }

    /** The answer's status and body once its head and Content-Length bytes are in. */
    private data(d: string) {
      this.buf += d;
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(this.buf.slice(0, end))![1]);
      if (this.buf.length < end + 4 + len) return;
      const text = Buffer.from(this.buf.slice(end + 4, end + 4 + len), "latin1").toString("utf8");
      const status = Number(this.buf.slice(9, 12));
      this.buf = this.buf.slice(end + 4 + len);
      const answered = this.wait!;
      this.wait = undefined;
      answered(status + text);
    }

    request(): Promise<string> {
      let head = `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\n`;
      for (const k in headers) head += `${k}: ${(headers as Record<string, string>)[k]}\r\n`;
      head += `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      return new Promise((resolve, reject) => {
        // A timer per request, as the runtime's client has.
        const timer = setTimeout(() => reject(new Error("timeout")), 15_000);
        this.wait = (answer) => {
          clearTimeout(timer);
          resolve(answer);
        };
        this.sock.write(head);
      });
    }
  }
  const concurrency = 8;
  const n = Number(process.argv[2] ?? 3000);
  const rounds = Number(process.argv[3] ?? 5);
  const bares = await Promise.all(Array.from({ length: concurrency }, async () => { const b = new Bare(); await b.open(); return b; }));
  const clients: Record<string, (k: number) => Promise<string>> = {
    "runtime's client": async () => (await httpRequest(url, { method: "POST", headers, body, timeoutMs: 15_000 })).text(),
    "bare socket": (k) => bares[k].request(),
  };
  async function run(call: (k: number) => Promise<string>, count: number) {
    let next = 0;
    const start = process.cpuUsage();
    await Promise.all(Array.from({ length: concurrency }, async (_, k) => { while (next++ < count) if (!(await call(k)).includes("ATXid_")) throw new Error("bad answer"); }));
    const u = process.cpuUsage(start);
    return (u.user + u.system) / count;
  }
  for (const c of Object.values(clients)) await run(c, 500);
  const per: Record<string, number[]> = { "runtime's client": [], "bare socket": [] };
  for (let r = 0; r < rounds; r++) for (const [name, c] of Object.entries(clients)) per[name].push(await run(c, n));
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [name, xs] of Object.entries(per)) console.log(`${name.padEnd(22)} median ${med(xs).toFixed(0)} us CPU per request (rounds ${xs.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`ratio bare / runtime's client ${(med(per["bare socket"]) / med(per["runtime's client"])).toFixed(2)}`);
  for (const b of bares) b.close();
  server.disconnect();
}
