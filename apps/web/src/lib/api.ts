// The pages' server code calls the public API (the gateway) like any client,
// with the Connect clients generated from the contracts.
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { headers } from "next/headers";
import { webSettings } from "./settings";

export function apiUrl(): string {
  return webSettings().apiUrl;
}

export interface CallOptions {
  /** Sent as Accept-Language so services answer in the customer's language. */
  locale?: string;
  token?: string;
}

/**
 * The customer's address chain as this server received it (Next.js sets the peer's address when
 * no proxy did): the gateway budgets each customer by it when it trusts this server's address
 * (TRUSTED_PROXIES), not every customer of the tip page by this server's. Outside a request: none.
 */
async function forwardedFor(): Promise<string | null> {
  try {
    return (await headers()).get("x-forwarded-for");
  } catch {
    return null;
  }
}

export function serverClient<S extends DescService>(service: S, options: CallOptions = {}): Client<S> {
  const callHeaders: Interceptor = (next) => async (req) => {
    if (options.locale) req.header.set("accept-language", options.locale);
    if (options.token) req.header.set("authorization", `Bearer ${options.token}`);
    const chain = await forwardedFor();
    if (chain) req.header.set("x-forwarded-for", chain);
    return next(req);
  };
  return createClient(service, createConnectTransport({ baseUrl: apiUrl(), httpVersion: "1.1", useBinaryFormat: true, interceptors: [callHeaders] }));
}
