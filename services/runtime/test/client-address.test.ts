import assert from "node:assert/strict";
import { test } from "node:test";
import { budgetNetwork, clientAddress, networkList } from "../src/client-address.js";

test("the client is the right-most address not added by a trusted proxy", () => {
  const trusted = networkList(["10.0.0.0/8", "127.0.0.1"]);
  // No trusted proxies: X-Forwarded-For is ignored.
  assert.equal(clientAddress("203.0.113.9", "1.1.1.1", undefined), "203.0.113.9");
  // A peer that is not a trusted proxy is the client, whatever it claims.
  assert.equal(clientAddress("198.51.100.7", "1.1.1.1", trusted), "198.51.100.7");
  // Through two trusted hops: the right-most untrusted entry; the client's own prefix is ignored.
  assert.equal(clientAddress("::ffff:10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.3", trusted), "203.0.113.9");
  assert.equal(clientAddress("127.0.0.1", ["6.6.6.6", "203.0.113.9"], trusted), "203.0.113.9");
  // Only trusted hops: the left-most one; garbage where the client's address should be is not trusted.
  assert.equal(clientAddress("10.0.0.2", "10.0.0.9", trusted), "10.0.0.9");
  assert.equal(clientAddress("10.0.0.2", "not-an-ip", trusted), "invalid");
  assert.throws(() => networkList(["10.0.0.0/33"]), /not an IPv4 or IPv6 CIDR/);
});

test("a budget is kept per IPv6 /64 (one subscriber's network), per IPv4 address", () => {
  assert.equal(budgetNetwork("2001:db8:1:2::a"), "2001:db8:1:2::/64");
  assert.equal(budgetNetwork("2001:0DB8:0001:0002:ffff:1:2:3"), "2001:db8:1:2::/64");
  assert.equal(budgetNetwork("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(budgetNetwork("::1"), "0:0:0:0::/64");
  assert.equal(budgetNetwork("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(budgetNetwork("203.0.113.9"), "203.0.113.9");
  assert.equal(budgetNetwork("::ffff:203.0.113.9"), "::ffff:203.0.113.9");
  assert.equal(budgetNetwork("unknown"), "unknown");
});
