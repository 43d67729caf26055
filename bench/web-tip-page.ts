// The customer's tip page on a cheap phone on a slow network: Largest
// Contentful Paint and the JavaScript it ships, in Debian's chromium with the
// network emulated at 400 kbit/s and 400 ms round trip and the CPU slowed 4x
// (DevTools protocol), for a worker with a role and an uploaded photo. The yardstick is a plain HTML page with the same text
// served by node:http in this process, loaded under the same throttling.
//   node --import tsx bench/web-tip-page.ts [runs=3]
import http from "node:http";
import { gzipSync } from "node:zlib";
import { chromium, type Browser } from "playwright-core";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { randomInt, randomUUID } from "node:crypto";
import { startEmbedded } from "../platform/src/embedded.js";

const runs = Number(process.argv[2] ?? 3);
const BUDGET_KB = 120;
const LCP_BUDGET_MS = 2500;
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

// The platform as make run starts it (a generated QR signing key, as embedded runs may).
process.env.QR_ALLOW_DEV_SIGNING_KEY ??= "true";
const platform = await startEmbedded({ DATA_DIR: "memory", PORT: "0", LOG_LEVEL: "silent" });
let yardstick: http.Server | undefined;
let browser: Browser | undefined;
try {
  // A worker with a QR code, over the public API as the demo does.
  const api = <S extends Parameters<typeof createClient>[0]>(s: S, token?: string) =>
    createClient(s, createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "1.1", interceptors: token ? [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] : [] }));
  const phone = `07${randomInt(10_000_000, 99_999_999)}`;
  const { challengeId } = await api(AuthService).startPhoneVerification({ phone });
  const sms = (await (await fetch(platform.simulators["SMS with OTPs"])).json()) as { messages: { to: string; message: string }[] };
  const otp = /\b(\d{6})\b/.exec(sms.messages.filter((m) => m.to.endsWith(phone.slice(1))).at(-1)!.message)![1];
  const token = (await api(AuthService).verifyPhoneOtp({ challengeId, otp, role: Role.WORKER })).tokens!.accessToken;
  const workerId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub as string;
  await api(QrService, token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Wanjiku", currency: "KES", role: "waiter" });
  // An uploaded photo as the settings screen sends it: a 288 px square JPEG the browser made.
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", headless: true, args: ARGS });
  const maker = await browser.newPage();
  const photoB64 = (await maker.evaluate(`(() => {
    const c = document.createElement("canvas"); c.width = 288; c.height = 288;
    const x = c.getContext("2d"); const g = x.createRadialGradient(144, 110, 20, 144, 144, 200);
    g.addColorStop(0, "#d9a066"); g.addColorStop(1, "#3b2a1a"); x.fillStyle = g; x.fillRect(0, 0, 288, 288);
    for (let i = 0; i < 400; i++) { x.fillStyle = "hsl(" + (i * 37 % 360) + ",40%," + (30 + i % 40) + "%)"; x.fillRect((i * 53) % 288, (i * 97) % 288, 6, 6); }
    return c.toDataURL("image/jpeg", 0.85).split(",")[1];
  })()`)) as string;
  await maker.close();
  const photo = Buffer.from(photoB64, "base64");
  await api(QrService, token).putProfilePhoto({ ownerKind: OwnerKind.WORKER, ownerId: workerId, image: photo });
  const { qrCode } = await api(QrService, token).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID(), parameters: { table: "12" } });
  const url = qrCode!.url;

  // What the page ships: every script its HTML loads, raw and gzipped.
  const html = await (await fetch(url)).text();
  // Scripts marked noModule (Next's legacy polyfills) are neither fetched nor run by a modern browser.
  const tags = [...html.matchAll(/<script([^>]*)>/g)].map((m) => m[1]).filter((a) => /src="/.test(a));
  const legacy = tags.filter((a) => /nomodule/i.test(a)).length;
  const scripts = tags.filter((a) => !/nomodule/i.test(a)).map((a) => new URL(/src="([^"]+)"/.exec(a)![1], url).toString());
  let raw = 0;
  let gz = 0;
  for (const s of scripts) {
    const body = Buffer.from(await (await fetch(s)).arrayBuffer());
    raw += body.length;
    gz += gzipSync(body, { level: 9 }).length;
  }

  // The yardstick: the page's visible text as plain HTML, no script, no stylesheet.
  const plain = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>TTIP</title></head><body><main>${html.replace(/<script[\s\S]*?<\/script>/g, "").replace(/<link[^>]*>/g, "").replace(/^[\s\S]*<main>|<\/main>[\s\S]*$/g, "")}</main></body></html>`;
  yardstick = http.createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(plain));
  await new Promise<void>((r) => yardstick!.listen(0, "127.0.0.1", r));
  const yardUrl = `http://127.0.0.1:${(yardstick.address() as { port: number }).port}/`;

  const lcp = async (target: string): Promise<{ lcp: number; bytes: number }> => {
    const context = await browser!.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    // 400 kbit/s each way, 400 ms round trip; the CPU four times slower.
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 400, downloadThroughput: (400 * 1024) / 8, uploadThroughput: (400 * 1024) / 8 });
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    let bytes = 0;
    cdp.on("Network.loadingFinished", (e: { encodedDataLength: number }) => (bytes += e.encodedDataLength));
    await page.goto(target, { waitUntil: "load", timeout: 120_000 });
    // Evaluated in the page (a string: this file is type-checked without the DOM's types).
    const value = (await page.evaluate(
      `new Promise((resolve) => new PerformanceObserver((list) => resolve(list.getEntries().at(-1).startTime)).observe({ type: "largest-contentful-paint", buffered: true }))`,
    )) as number;
    await context.close();
    return { lcp: value, bytes };
  };

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const page: number[] = [];
  const yard: number[] = [];
  let transferred = 0;
  for (let i = 0; i < runs; i++) {
    const p = await lcp(url);
    page.push(p.lcp);
    transferred = p.bytes;
    yard.push((await lcp(yardUrl)).lcp);
  }
  const kb = (n: number) => (n / 1024).toFixed(1);
  console.log(`tip page ${new URL(url).pathname} (${runs} runs, 360x740, 400 kbit/s, 400 ms RTT, CPU 4x slower)`);
  console.log(`  JavaScript (run by the browser; ${legacy} legacy noModule file not counted): ${scripts.length} files, ${kb(raw)} KB raw, ${kb(gz)} KB gzipped (budget ${BUDGET_KB} KB): ${gz / 1024 <= BUDGET_KB ? "within" : "OVER"}`);
  console.log(`  role "waiter" and an uploaded photo (${kb(photo.length)} KB JPEG, 288 px) on the page`);
  console.log(`  transferred on first load: ${kb(transferred)} KB; first HTML ${kb(Buffer.byteLength(html))} KB raw, ${kb(gzipSync(html).length)} KB gzipped`);
  console.log(`  LCP: median ${median(page).toFixed(0)} ms (runs: ${page.map((x) => x.toFixed(0)).join(", ")}) (budget ${LCP_BUDGET_MS} ms): ${median(page) <= LCP_BUDGET_MS ? "within" : "OVER"}`);
  console.log(`  yardstick (same text as plain HTML): median LCP ${median(yard).toFixed(0)} ms; ratio ${(median(page) / median(yard)).toFixed(2)}x`);
} finally {
  await browser?.close();
  yardstick?.close();
  await platform.close();
}
process.exit(0);
