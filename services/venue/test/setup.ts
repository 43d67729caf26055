// The venue service with the real wallet, qr, notification and auth services on the
// harness's PostgreSQL, Redis and NATS; SMS go to the provider simulator.
import { createHash, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createAuth } from "@ttip/auth";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { createQrModule } from "@ttip/qr";
import { callerHeaders, type Clock, stepUpHeaders } from "@ttip/runtime";
import { startTestService, type TestService, testPhone } from "@ttip/runtime/testing";
import { eventually as waitUntil } from "@ttip/runtime/testing";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { AccountKind, OwnerKind as WalletOwner } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { wallet } from "@ttip/wallet";
import { createVenueModule } from "../src/index.js";

export { KES } from "@ttip/runtime/testing";

export interface Harness {
  t: TestService;
  sim: ProviderSimulator;
  walletInternal: Client<typeof WalletInternalService>;
  /** A venue with a manager who may call VenueService as such. */
  /** `currency`: the venue profile's (its tip page's), KES unless given. */
  /** `managerId`: its creator (a new user unless given). */
  newVenue(name?: string, currency?: string, managerId?: string): Promise<{ venueId: string; managerId: string; api: Client<typeof VenueService> }>;
  /** The venue service as a signed-in worker. */
  asWorker(workerId: string): Client<typeof VenueService>;
  /** Invites a new number and accepts through the SMS link: as a new worker, or as `workerId` coming back. */
  join(v: { venueId: string; api: Client<typeof VenueService> }, name: string, roleId?: string, joinedAt?: Date, workerId?: string): Promise<{ memberId: string; workerId: string }>;
  /** A tip credited to the venue's pool as payment credits it (clearing -> pool), now. */
  tipPool(venueId: string, minor: bigint): Promise<void>;
  /** A refund or lost chargeback taken back from the pool (pool -> clearing), now; it may leave the pool owing. */
  takeFromPool(venueId: string, minor: bigint): Promise<void>;
  /** An admin's ReverseEntry in the wallet, behind the venue's back; the reversal's entry id. */
  reverseInWallet(entryId: string, reason: string): Promise<string>;
  poolBalance(venueId: string): Promise<bigint>;
  walletBalance(workerId: string): Promise<bigint>;
  trialBalanced(): Promise<boolean>;
  close(): Promise<void>;
}

/** `clock`: the services' (a test moves it forward past a link's expiry); the system's when absent. `env`: the venue's, over these tests'. */
export async function startHarness(options: { clock?: Clock; env?: Record<string, string> } = {}): Promise<Harness> {
  const sim = new ProviderSimulator();
  await sim.start();
  let notificationUrl = "";
  const notification = createNotificationModule({
    config: {
      providers: sim.config("africastalking", "at-callback-secret"),
      retry: { ...DEFAULT_RETRY, attemptsPerProvider: 2, baseDelayMs: 30, maxDelayMs: 100, sendLeaseMs: 15_000, httpTimeoutMs: 3_000 },
      publicUrl: () => notificationUrl,
    },
    sweepIntervalMs: 100,
    contacts: async () => null,
  });
  const t = await startTestService(createVenueModule({ env: { VENUE_RESUME_INTERVAL_MS: "0", VENUE_JOIN_URL: "http://127.0.0.1:8080/join", ...options.env } }), {
    clock: options.clock,
    // auth: the inviting manager's own number (these managers are not in auth: nothing to compare).
    with: [wallet, createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } }), notification, createAuth({ env: {}, otpSender: { send: async () => undefined } })],
  });
  const qr = createClient(QrService, t.ctx.peers("qr"));
  const walletInternal = createClient(WalletInternalService, t.ctx.peers("wallet"));
  const walletAdmin = createClient(WalletAdminService, t.ctx.peers("wallet"));
  const walletUser = createClient(WalletService, t.ctx.peers("wallet"));
  const asAdmin = { headers: callerHeaders("admin-1", "admin") };
  const accountOf = async (kind: AccountKind, ownerKind: WalletOwner, ownerId: string) =>
    (await walletInternal.ensureAccount({ kind, ownerKind, ownerId, currency: "KES" })).account!.accountId;

  /** `minor` from clearing to the pool (negative: back), under its own receipt. */
  async function postToPool(venueId: string, minor: bigint, description: string) {
    const [clearing, pool] = await Promise.all([
      accountOf(AccountKind.MPESA_CLEARING, WalletOwner.PLATFORM, ""),
      accountOf(AccountKind.VENUE_POOL, WalletOwner.VENUE, venueId),
    ]);
    const receipt = `R${randomUUID().slice(0, 9).toUpperCase()}`;
    const { entry } = await walletInternal.postEntry({
      idempotencyKey: receipt,
      cause: { cause: { case: "mpesaReceipt", value: receipt } },
      allowOwnerDebt: minor < 0n,
      postings: [
        { accountId: clearing, amount: { amountMinor: -minor, currency: "KES" }, memo: `M-Pesa ${receipt}` },
        { accountId: pool, amount: { amountMinor: minor, currency: "KES" }, memo: description },
      ],
      description,
    });
    // A posting is timed to the microsecond, a period's end to the millisecond: a period
    // ending at `new Date()` taken within the posting's millisecond would leave it out
    // (it falls in the next period). Return once the clock has passed that millisecond.
    const postedMs = timestampDate(entry!.postedAt!).getTime();
    while (Date.now() <= postedMs) await sleep(1);
  }

  const h: Harness = {
    t,
    sim,
    walletInternal,
    async newVenue(name = "Java House", currency = "", managerId = randomUUID()) {
      const venueId = randomUUID();
      await qr.putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: name, currency }, { headers: callerHeaders(managerId, "venue_manager") });
      return { venueId, managerId, api: t.client(VenueService, { subject: managerId, roles: ["venue_manager"] }) };
    },
    asWorker: (workerId) => t.client(VenueService, { subject: workerId, roles: ["worker"] }),
    async join(v, name, roleId = "front_of_house", joinedAt, workerId = randomUUID()) {
      const phone = testPhone({ format: "07" });
      const invite = { venueId: v.venueId, phone, displayName: name, roleId, idempotencyKey: randomUUID(),
        joinedAt: joinedAt ? { seconds: BigInt(Math.floor(joinedAt.getTime() / 1000)), nanos: (joinedAt.getTime() % 1000) * 1e6 } : undefined };
      let { member, invitationSent } = await v.api.inviteMember(invite);
      // Its SMS call has a 5 s deadline (members.ts), which a first call on a loaded machine missed: as a manager
      // would, the test invites again under the same key, which texts a fresh link.
      for (let again = 0; !invitationSent && again < 5; again++) ({ member, invitationSent } = await v.api.inviteMember(invite));
      if (!invitationSent) throw new Error("invitation not sent");
      const msisdn = `+254${phone.slice(1)}`;
      // The link the member's row holds now: a late first SMS carries one an invitation since replaced.
      const token = await eventually(async () => {
        const { rows: [row] } = await t.db.pool.query("SELECT invite_token_hash FROM venue.members WHERE member_id = $1", [member!.memberId]);
        const links = sim.sent.filter((m) => m.to === msisdn || m.to === msisdn.slice(1)).map((m) => /\/join\/([A-Za-z0-9_-]+)/.exec(m.body)?.[1]);
        return links.find((link) => link && createHash("sha256").update(link).digest("hex") === row?.invite_token_hash);
      }, "invitation SMS");
      await h.asWorker(workerId).acceptInvitation({ token });
      return { memberId: member!.memberId, workerId };
    },
    tipPool: (venueId, minor) => postToPool(venueId, minor, "Shared tip"),
    takeFromPool: (venueId, minor) => postToPool(venueId, -minor, "Card dispute lost"),
    async reverseInWallet(entryId, reason) {
      const steppedUp = { headers: { ...asAdmin.headers, ...stepUpHeaders() } };
      return (await walletAdmin.reverseEntry({ entryId, idempotencyKey: randomUUID(), reason }, steppedUp)).reversal!.entryId;
    },
    async poolBalance(venueId) {
      const { accounts } = await walletAdmin.listAccounts({ kind: AccountKind.VENUE_POOL, ownerId: venueId }, asAdmin);
      if (!accounts[0]) return 0n;
      return (await walletAdmin.getAccount({ accountId: accounts[0].accountId }, asAdmin)).balance!.ledger!.amountMinor;
    },
    async walletBalance(workerId) {
      const { balances } = await walletUser.getBalance({ currency: "KES" }, { headers: callerHeaders(workerId, "worker") });
      return balances[0]?.ledger?.amountMinor ?? 0n;
    },
    trialBalanced: async () => (await walletAdmin.getTrialBalance({}, asAdmin)).balanced,
    async close() {
      await t.close();
      await sim.close();
    },
  };
  notificationUrl = "";
  return h;
}

/** The runtime's eventually, with these tests' argument order. */
export const eventually = <T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> =>
  waitUntil(what, check, timeoutMs);

export const ts = (d: Date) => ({ seconds: BigInt(Math.floor(d.getTime() / 1000)), nanos: (d.getTime() % 1000) * 1_000_000 });
export const period = (start: Date, end: Date) => ({ start: ts(start), end: ts(end) });
