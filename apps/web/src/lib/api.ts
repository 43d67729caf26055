// The pages' server code calls the public API (the gateway) like any client,
// with the Connect clients generated from the contracts.
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { webSettings } from "./settings";

export function apiUrl(): string {
  return webSettings().apiUrl;
}

export interface CallOptions {
  /** Sent as Accept-Language so services answer in the customer's language. */
  locale?: string;
  token?: string;
}

export function serverClient<S extends DescService>(service: S, options: CallOptions = {}): Client<S> {
  const headers: Interceptor = (next) => (req) => {
    if (options.locale) req.header.set("accept-language", options.locale);
    if (options.token) req.header.set("authorization", `Bearer ${options.token}`);
    return next(req);
  };
  return createClient(service, createConnectTransport({ baseUrl: apiUrl(), httpVersion: "1.1", useBinaryFormat: true, interceptors: [headers] }));
}
