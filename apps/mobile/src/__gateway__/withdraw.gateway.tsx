// Against the real gateway and services: the phone's own device key (P-256 from
// @noble/curves, the secret in the secure store) is registered with the real auth
// service, signs its challenge, and the payout goes to the Daraja simulator; then the same
// key proves a new payout number to the real payment service.
import { createClient } from "@connectrpc/connect";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { fireEvent, render, screen, waitFor } from "@testing-library/react-native";
import { AppRoot } from "../App";
import type { AppServices } from "../app-context";
import { secureStoreKeyring } from "../lib/device-key";
import { memoryStore } from "../lib/key-value";
import { SessionStore } from "../lib/session";
import { gatewayTransport } from "../lib/transport";

interface NodeHttp {
  request(
    url: string,
    options: { method: string; headers: Record<string, string> },
    onResponse: (res: { statusCode?: number; headers: Record<string, string | string[] | undefined>; on(event: string, f: (x: never) => void): void }) => void,
  ): { on(event: string, f: (e: Error) => void): void; destroy(e: Error): void; end(body?: string | Uint8Array): void };
}

/**
 * fetch over node:http: the React Native test environment replaces fetch with a
 * polyfill that cannot reach a real server; the unary Connect calls need only this.
 */
const nodeFetch: typeof fetch = (input, init = {}) =>
  new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- node's own http, inside jest's sandbox
    const http = require("node:http") as NodeHttp;
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => void (headers[k] = v));
    const req = http.request(String(input), { method: init.method ?? "GET", headers }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        chunks.reduce((at, c) => (body.set(c, at), at + c.length), 0);
        const responseHeaders = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") responseHeaders.set(k, v);
        const text = async () => new TextDecoder().decode(body);
        resolve({ status: res.statusCode ?? 0, headers: responseHeaders, arrayBuffer: async () => body.buffer, text, json: async () => JSON.parse(await text()) } as unknown as Response);
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    init.signal?.addEventListener("abort", () => req.destroy(new Error("aborted")));
    req.end(init.body == null ? undefined : typeof init.body === "string" ? init.body : (init.body as Uint8Array));
  });

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through test/gateway.test.ts`);
  return v;
};

test("a worker signs in on the phone and withdraws with the phone's device key, verified by auth", async () => {
  const gateway = env("TTIP_GATEWAY_URL");
  const phoneNumber = env("TTIP_WORKER_PHONE");
  const secure = memoryStore();
  const prompts: string[] = [];
  const services: AppServices = {
    sessions: new SessionStore(secure),
    cache: memoryStore(),
    writeKeys: secure,
    keyring: async () => secureStoreKeyring(secure, (n) => crypto.getRandomValues(new Uint8Array(n))),
    biometric: { confirm: async (p) => (prompts.push(p), true) },
    push: { token: async () => ({ token: "fcm-gateway-test-token-0123456789", platform: "android" }), onNotification: () => () => undefined },
    share: async () => undefined,
    newKey: () => crypto.randomUUID(),
  };
  await render(<AppRoot services={services} transport={(interceptors) => gatewayTransport(gateway, interceptors, nodeFetch)} deviceLocale="en" />);

  // The gateway answers this client at all (a clear failure before the screens' own).
  const probe = await createClient(AuthService, gatewayTransport(gateway, [], nodeFetch))
    .getJwks({})
    .then(() => "reachable", (err: unknown) => `${String(err)} cause: ${String((err as { cause?: unknown }).cause)}`);
  expect(probe).toBe("reachable");

  await fireEvent.changeText(await screen.findByTestId("phone"), phoneNumber);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await screen.findByTestId("otp", {}, { timeout: 20_000 });
  const otp = new TextDecoder().decode(await (await nodeFetch(`${env("TTIP_OTP_URL")}?phone=${encodeURIComponent(phoneNumber)}`)).arrayBuffer());
  await fireEvent.changeText(screen.getByTestId("otp"), otp);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("pin", {}, { timeout: 20_000 }), env("TTIP_WORKER_PIN"));
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await waitFor(() => expect(screen.getByTestId("available")).toHaveTextContent(env("TTIP_EXPECT_AVAILABLE")), { timeout: 20_000 });

  await fireEvent.press(screen.getByTestId("tab-withdraw"));
  await fireEvent.changeText(await screen.findByTestId("amount", {}, { timeout: 20_000 }), "150");
  await fireEvent.changeText(screen.getByTestId("mpesa"), phoneNumber);
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm", {}, { timeout: 20_000 }));
  // The phone's first key takes the PIN (auth adds a key only with it).
  await fireEvent.changeText(await screen.findByTestId("key-pin-input", {}, { timeout: 20_000 }), env("TTIP_WORKER_PIN"));
  await fireEvent.press(screen.getByTestId("key-pin-continue"));
  await waitFor(() => expect(screen.getByTestId("payout")).toHaveTextContent(/Withdrawal of KES 150: sent/), { timeout: 60_000 });
  expect(screen.getByTestId("receipt")).toHaveTextContent(/M-Pesa receipt \w+/);
  expect(secure.data.get(`device_key.${env("TTIP_WORKER_ID")}`)).toMatch(/"deviceId":"[0-9a-f-]{36}"/);

  // Payouts go to another number from now: payment asks for the device's step-up, the same key gives it.
  const newNumber = env("TTIP_NEW_PAYOUT_PHONE");
  await fireEvent.press(screen.getByTestId("tab-settings"));
  await waitFor(() => expect(screen.getByTestId("payout-phone")).toHaveTextContent(/Payouts go to 2547\*{6}\d{2}\./), { timeout: 20_000 });
  await fireEvent.changeText(screen.getByTestId("payout-phone-new"), newNumber);
  await fireEvent.press(screen.getByTestId("save-payout"));
  await waitFor(() => expect(screen.getByTestId("payout-note")).toHaveTextContent("Saved."), { timeout: 20_000 });
  expect(screen.getByTestId("payout-phone")).toHaveTextContent(`Payouts go to 2547******${newNumber.slice(-2)}.`);
  expect(screen.getByTestId("payout-cooling")).toHaveTextContent(/^Automatic payouts to this new number start on/);
  expect(prompts).toEqual(["Confirm the withdrawal of KES 150", `Confirm payouts to ${newNumber.slice(0, 4)} ${newNumber.slice(4, 7)} ${newNumber.slice(7)}`]);
}, 120_000);
