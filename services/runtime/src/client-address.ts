import { BlockList, isIP } from "node:net";

/** A list of IPv4/IPv6 networks ("10.0.0.0/8", "::1/128", or a bare address); throws on a bad entry. */
export function networkList(cidrs: readonly string[], what = "network"): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, prefix] = cidr.trim().split("/");
    const type = isIP(address) === 6 ? "ipv6" : isIP(address) === 4 ? "ipv4" : undefined;
    const max = type === "ipv4" ? 32 : 128;
    const bits = prefix === undefined ? max : Number(prefix);
    if (!type || !Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`${what} ${cidr} is not an IPv4 or IPv6 CIDR`);
    list.addSubnet(address, bits, type);
  }
  return list;
}

/** "::ffff:10.0.0.1" (an IPv4 client on a dual-stack socket) is 10.0.0.1. */
export function plainAddress(address: string): string {
  return address.trim().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
}

export function inNetworks(list: BlockList, address: string): boolean {
  const plain = plainAddress(address);
  const type = isIP(plain);
  if (!type) return false;
  return list.check(plain, type === 6 ? "ipv6" : "ipv4");
}

/** Where ingress controllers and load balancers live in a cluster: loopback and private ranges. */
export const PRIVATE_NETWORKS = Object.freeze(["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]);

/**
 * The client's address as the right-most one not added by a trusted proxy. The
 * direct peer counts only if it is itself a trusted proxy; then X-Forwarded-For
 * is read from the right, skipping trusted proxies, and the first other address
 * is the client (everything left of it is whatever the client chose to send).
 * Without trusted proxies X-Forwarded-For is ignored.
 */
export function clientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined, trusted: BlockList | undefined): string {
  const direct = plainAddress(peer ?? "") || "unknown";
  if (!trusted || !inNetworks(trusted, direct)) return direct;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor ?? "")
    .split(",")
    .map((h) => plainAddress(h))
    .filter(Boolean)
    .slice(-32); // a header longer than any real chain of proxies is the client's invention
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!inNetworks(trusted, hops[i])) return isIP(hops[i]) ? hops[i] : "invalid";
  }
  return hops[0] ?? direct;
}

/**
 * What a per-address budget is kept for: an IPv6 client by its /64 ("2001:db8:1:2::/64"), the network one
 * subscriber is given, whose 2^64 addresses are theirs to rotate through call by call; any other by itself.
 */
export function budgetNetwork(address: string): string {
  const plain = plainAddress(address).replace(/%.*$/, "");
  if (isIP(plain) !== 6) return address;
  const [head, tail] = plain.split("::");
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const written = tail === undefined ? groups(head) : [...groups(head), ...Array<string>(8 - groups(head).length - groups(tail).length).fill("0"), ...groups(tail)];
  return `${written.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}
