// Where a webhook may be sent. A partner names a URL; the platform must not be
// made to POST into its own network (the metadata service, a database, an admin
// port). The host's addresses are checked when the subscription is made and
// again at every delivery, and the request connects to the very addresses that
// were checked: a DNS answer that changes between check and connect (DNS
// rebinding) cannot slip a private address in.
import { lookup as dnsLookup } from "node:dns/promises";
import type { LookupFunction } from "node:net";
import { BlockList, isIP } from "node:net";
import { DependencyUnavailableError, fieldError } from "@ttip/runtime";

/** The host's addresses, as the system resolver gives them (an injected one in tests: DNS is the edge of the world). */
export type HostResolver = (hostname: string) => Promise<string[]>;

export const systemResolver: HostResolver = async (hostname) => (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

/** At most this many addresses are checked per host; more is not a receiver's DNS. */
const MAX_ADDRESSES = 32;

/**
 * An IPv4 range as NAT64's well-known prefix carries it (64:ff9b::/96): a NAT64 gateway (an
 * IPv6-only cluster's way out) connects to the IPv4 address in the last 32 bits.
 */
function nat64(address: string, prefix: number): [string, number] {
  const [a, b, c, d] = address.split(".").map(Number);
  return [`64:ff9b::${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`, 96 + prefix];
}

/** The ranges, each IPv4 one also in its NAT64 form. */
function blockList(v4: string[], v6: string[]): BlockList {
  const list = new BlockList();
  for (const cidr of v4) {
    const [address, prefix] = [cidr.split("/")[0], Number(cidr.split("/")[1])];
    list.addSubnet(address, prefix, "ipv4");
    list.addSubnet(...nat64(address, prefix), "ipv6");
  }
  for (const cidr of v6) list.addSubnet(cidr.split("/")[0], Number(cidr.split("/")[1]), "ipv6");
  return list;
}

const LOOPBACK = blockList(["127.0.0.0/8"], ["::1/128"]);
/**
 * Never reachable from the internet, or not a host at all: this network,
 * private (RFC 1918), shared (CGNAT), link-local (cloud metadata at
 * 169.254.169.254), documentation, benchmarking, multicast and reserved;
 * IPv6 unspecified, unique local, link-local, multicast and documentation.
 * BlockList also matches IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) against
 * the IPv4 ranges, so a mapped address is judged as the IPv4 one it hides;
 * blockList adds each IPv4 range's NAT64 form for the same reason.
 */
const PRIVATE = blockList(
  ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3"],
  ["::/128", "64:ff9b:1::/48", "100::/64", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32"],
);

export type AddressKind = "public" | "loopback" | "private";

export function addressKind(ip: string): AddressKind {
  const v = isIP(ip);
  if (v === 0) return "private";
  const family = v === 4 ? "ipv4" : "ipv6";
  if (LOOPBACK.check(ip, family)) return "loopback";
  return PRIVATE.check(ip, family) ? "private" : "public";
}

/** A destination that may not be used, and why (for the field error or the delivery log). */
export class DestinationRefused extends Error {}

export interface DestinationPolicy {
  /** Production: https:// only. */
  httpsOnly: boolean;
  /** Loopback receivers (the sandbox and tests only; never in production). */
  allowLoopback: boolean;
}

/** A checked destination: the URL and the addresses a request to it may connect to. */
export interface Destination {
  url: URL;
  addresses: string[];
}

/**
 * Checks a URL against the policy, resolving its host: public addresses only
 * (loopback too with allowLoopback), and plain http:// only to loopback.
 * Throws DestinationRefused saying why.
 */
export async function resolveDestination(raw: string, policy: DestinationPolicy, resolve: HostResolver): Promise<Destination> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DestinationRefused("not an absolute URL");
  }
  if (url.username || url.password) throw new DestinationRefused("must not carry credentials: deliveries are signed instead");
  if (url.hash) throw new DestinationRefused("must not have a #fragment");
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new DestinationRefused("must be https://");
  if (url.protocol === "http:" && (policy.httpsOnly || !policy.allowLoopback)) {
    throw new DestinationRefused(policy.httpsOnly ? "must be https://" : "must be https:// (http:// only to loopback, where loopback is allowed: the sandbox and tests)");
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const addresses = isIP(host) ? [host] : await resolveHost(host, resolve);
  for (const address of addresses) {
    const kind = addressKind(address);
    if (kind === "public" && url.protocol === "http:") throw new DestinationRefused(`must be https://: ${host} is not on loopback`);
    if (kind === "loopback" && policy.allowLoopback) continue;
    if (kind !== "public") {
      // A name is refused without its address or kind, in the words a name that does not resolve gets: the partner
      // reads this answer, and must not map our internal names (which resolve to private addresses here) through it.
      if (host !== address) throw new DestinationRefused(notPublic(host));
      throw new DestinationRefused(`${address} is a ${kind} address: webhooks go to public addresses only`);
    }
  }
  return { url, addresses };
}

const notPublic = (host: string) => `${host} does not resolve to public addresses only: webhooks go to public addresses only`;

async function resolveHost(host: string, resolve: HostResolver): Promise<string[]> {
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOTFOUND" || code === "ENODATA") throw new DestinationRefused(notPublic(host));
    throw new DependencyUnavailableError(`cannot resolve ${host} right now (${code ?? (err as Error).message}); retry shortly`);
  }
  if (addresses.length === 0) throw new DestinationRefused(notPublic(host));
  return addresses.slice(0, MAX_ADDRESSES);
}

/** The subscription-time check: the URL as stored, or INVALID_ARGUMENT naming the field. */
export async function checkWebhookUrl(raw: string, policy: DestinationPolicy, resolve: HostResolver = systemResolver): Promise<string> {
  try {
    return (await resolveDestination(raw, policy, resolve)).url.toString();
  } catch (err) {
    if (err instanceof DestinationRefused) throw fieldError("url", err.message);
    throw err;
  }
}

/** A lookup for http.request that answers with the checked addresses only: no second resolution to race. */
export function pinnedLookup(addresses: string[]): LookupFunction {
  return (_hostname, options, callback) => {
    const all = addresses.map((address) => ({ address, family: isIP(address) }));
    const wanted = options.family === 4 || options.family === 6 ? all.filter((a) => a.family === options.family) : all;
    if (wanted.length === 0) return callback(Object.assign(new Error("no checked address of that family"), { code: "ENOTFOUND" }), "", 0);
    if (options.all) return (callback as unknown as (e: null, a: typeof all) => void)(null, wanted);
    callback(null, wanted[0].address, wanted[0].family);
  };
}
