// The apps' side of bench/gateway-overhead.ts, on a worker thread so that its
// CPU is not charged to the platform's: the calls the web and mobile apps make
// through the gateway, as a browser makes them (Connect over HTTP/1.1), in JSON
// (the mobile app's format) and in binary (the web app's). Says its thread id
// and its paths first, then answers each AppsRun with an AppsResult.
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { closedLoop } from "./load.js";
import { threadId } from "./process-cpu.js";

export interface AppsInput {
  /** Gateways by name ("over HTTP/2", "in process"). */
  gateways: Record<string, string>;
  /** A code's signed payload, as scanned. */
  payload: string;
  /** The worker whose codes are listed, and a token of theirs. */
  owner: string;
  token: string;
  /** Codes per ListQrCodes page. */
  pageSize: number;
}

export interface AppsRun {
  path: string;
  concurrency: number;
  seconds: number;
}

export interface AppsResult {
  calls: number;
  perSecond: number;
  p50: number;
  p99: number;
}

/** "<gateway>: <RPC> <format>" -> one call. */
export const appsPath = (gateway: string, rpc: string, binary: boolean) => `${gateway}: ${rpc} ${binary ? "binary" : "JSON"}`;

// The bench imports appsPath from here; the rest runs on the worker thread only.
if (!isMainThread) serve(workerData as AppsInput);

function serve(input: AppsInput): void {
  const calls = new Map<string, () => Promise<unknown>>();
  for (const [gateway, baseUrl] of Object.entries(input.gateways)) {
    for (const binary of [false, true]) {
      // One client per path, kept across runs: its connections stay warm.
      const qr = createClient(QrService, createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: binary }));
      const headers = { authorization: `Bearer ${input.token}` };
      calls.set(appsPath(gateway, "ResolveQrCode", binary), () => qr.resolveQrCode({ code: { case: "payload", value: input.payload } }));
      calls.set(appsPath(gateway, "ListQrCodes", binary), () =>
        qr.listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: input.owner, page: { pageSize: input.pageSize } }, { headers }),
      );
    }
  }

  parentPort!.on("message", (r: AppsRun) => {
    closedLoop(r.concurrency, r.seconds, calls.get(r.path)!).then(
      (result): void => parentPort!.postMessage({ calls: result.calls, perSecond: result.perSecond, p50: result.percentile(0.5), p99: result.percentile(0.99) } satisfies AppsResult),
      (err: unknown) => parentPort!.postMessage({ error: String((err as Error)?.stack ?? err) }),
    );
  });
  parentPort!.postMessage({ threadId: threadId(), paths: [...calls.keys()] });
}
