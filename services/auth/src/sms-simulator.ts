import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface SimulatedSms {
  messageId: string;
  to: string;
  message: string;
  receivedAt: Date;
}

export interface SmsSimulator {
  url: string;
  /** Every message accepted, oldest first. */
  messages: SimulatedSms[];
  /** The newest message to a number (with or without the plus). */
  lastTo(phone: string): SimulatedSms | undefined;
  close(): Promise<void>;
}

/** Africa's Talking's answer to one message: accepted (101) or refused as an invalid number (403). */
function sendResult(to: string, messageId: string, invalid: boolean): { status: number; body: unknown } {
  const recipient = invalid
    ? { statusCode: 403, number: to, status: "InvalidPhoneNumber", cost: "0", messageId: "None" }
    : { statusCode: 101, number: to, status: "Success", cost: "KES 0.8000", messageId };
  const message = invalid ? "Sent to 0/1 Total Cost: 0" : "Sent to 1/1 Total Cost: KES 0.8000";
  return { status: invalid ? 403 : 201, body: { SMSMessageData: { Message: message, Recipients: [recipient] } } };
}

/**
 * An SMS provider on loopback speaking Africa's Talking's shape:
 * POST /version1/messaging (form: username, to, message; header apiKey) answers
 * SMSMessageData.Recipients with statusCode 101 "Success". GET
 * /simulator/messages lists what was "delivered" (for tests and local runs).
 * Numbers ending in 0000 are refused with 403 "InvalidPhoneNumber".
 */
/** host: where it listens (loopback unless given; a cluster's simulators role listens on the pod's address). */
export async function startSmsSimulator(options: { apiKey?: string; port?: number; host?: string } = {}): Promise<SmsSimulator> {
  const messages: SimulatedSms[] = [];
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? "/", "http://sim");
    if (req.method === "GET" && url.pathname === "/simulator/messages") return reply(200, { messages });
    if (req.method !== "POST" || url.pathname !== "/version1/messaging") return reply(404, { error: "not found" });
    if (options.apiKey && req.headers.apikey !== options.apiKey) return reply(401, { error: "The supplied authentication is invalid" });
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      const form = new URLSearchParams(raw);
      const to = form.get("to") ?? "";
      const message = form.get("message") ?? "";
      if (!form.get("username") || !to || !message) return reply(400, { error: "username, to and message are required" });
      const messageId = `ATXid_${randomUUID().replace(/-/g, "")}`;
      const invalid = !/^\+?\d{9,15}$/.test(to) || to.endsWith("0000");
      if (!invalid) messages.push({ messageId, to, message, receivedAt: new Date() });
      const result = sendResult(to, messageId, invalid);
      reply(result.status, result.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    messages,
    lastTo: (phone) => {
      const bare = phone.replace(/^\+/, "");
      return messages.filter((m) => m.to.replace(/^\+/, "") === bare).at(-1);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
