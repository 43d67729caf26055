// A fake gateway for the screen tests: Connect's router transport serving the real
// generated service descriptors with in-memory state. Its auth checks device
// signatures for real (P-256 over the challenge), so the app's key code is exercised.
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { nairobiDayStart, nairobiWeekStart } from "@ttip/web-lib/nairobi-time";
import { p256 } from "@noble/curves/nist.js";
import { Code, ConnectError, createRouterTransport, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { Channel, InAppNotificationSchema, PreferencesSchema, TemplateKey, type InAppNotification, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { PayoutStatus, TipSchema, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { ImageFormat, OwnerKind, ProfileSchema, QrCodeSchema, QrCodeStatus, type QrCode } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { LimitKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";

const b64url = (s: string) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromB64url = (s: string) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
export const fakeJwt = (sub: string, n: number) => `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify({ sub, n }))}.sig${n}`;

const CHALLENGE_ID = "c2b1e9a0-0000-4000-8000-000000000001";
const PIN_MAX_FAILURES = 5;
const pinLocked = () =>
  new ConnectError("PIN locked after repeated failures; try again in 900 s or reset the PIN with an OTP", Code.ResourceExhausted, undefined, [
    { desc: DomainErrorInfoSchema, value: { reason: "RATE_LIMITED", metadata: { retry_after_seconds: "900" } } },
  ]);

export class FakeGateway {
  readonly userId = "0f6c1a52-7a0e-4c7e-9a56-3f1d2b1e9a01";
  otp = "123456";
  pin: string | undefined = "2580";
  /** Wrong PINs in a row; at auth's default of 5 the PIN is locked (ResetPin lifts it). */
  pinFailures = 0;
  /** When true every call fails as if the phone had no network. */
  offline = false;
  availableMinor = 1_500_00n;
  heldMinor = 0n;
  /** Wallet's limit per withdrawal, KES minor units; undefined: wallet sends no limits. */
  perWithdrawalMinor: bigint | undefined;
  /** What is left of wallet's limit for today, KES minor units; undefined: no daily limit sent. */
  todayLeftMinor: bigint | undefined;
  tips: Tip[] = [];
  qrCodes: QrCode[] = [];
  /** The name on the worker's tip page (qr's profile); undefined for a new sign-up, who has none. */
  profileName: string | undefined = "Wanjiru";
  readonly calls: { method: string; request: unknown; authorization: string | null; language: string | null }[] = [];
  readonly devices = new Map<string, string>(); // deviceId → public JWK
  /** What ListDevices says of each device key besides its JWK. */
  readonly deviceInfo = new Map<string, { name: string; registeredAt: Date; lastVerifiedAt?: Date }>();
  private devicesMade = 0;
  readonly challenges = new Map<string, { deviceId: string; challenge: Uint8Array; purpose: string }>();
  /** Unspent step-up tokens by the purpose their challenge was made for. */
  readonly stepUpTokens = new Map<string, string>();
  private stepUpsMade = 0;
  readonly payouts = new Map<string, { payoutId: string; amountMinor: bigint; phone: string; polls: number; result: { code: string; desc: string }; createdAt: Date }>(); // by idempotency key
  readonly pushTokens = new Set<string>();
  /** Auth's sessions, one per sign-in or refresh, with the access token each was given. */
  sessions: { sessionId: string; deviceId: string; userAgent: string; ipAddress: string; createdAt: Date; accessToken: string }[] = [];
  /** Payment's payout settings for the worker; `phone` in Daraja's form, "" when none is set. */
  payoutSettings = { phone: "", autoPayout: false, minimumMinor: 0n, automaticPayoutsFrom: undefined as Date | undefined };

  /** Wallet's limits as GetWithdrawalLimits sends them: those the test set. */
  withdrawalLimits() {
    const kes = (amountMinor: bigint) => ({ amountMinor, currency: "KES" });
    const limits = [];
    if (this.perWithdrawalMinor !== undefined) limits.push({ kind: LimitKind.PER_TRANSACTION, limit: kes(this.perWithdrawalMinor), remaining: kes(this.perWithdrawalMinor) });
    if (this.todayLeftMinor !== undefined) limits.push({ kind: LimitKind.DAILY, limit: kes(50_000_00n), remaining: kes(this.todayLeftMinor) });
    return limits;
  }
  readonly statementsAsked: string[] = [];
  inbox: InAppNotification[] = [];
  preferences: Preferences = create(PreferencesSchema, { kinds: [{ key: TemplateKey.TIP_RECEIVED, channels: [Channel.SMS, Channel.PUSH, Channel.IN_APP] }] });
  validAccess = new Set<string>();
  private issued = 0;
  /** Refresh tokens issued up to this count were revoked by a sign-out (auth refuses them). */
  private revokedThrough = 0;
  /** Fails the next RequestPayout with this error before doing anything. */
  failNextPayout: ConnectError | undefined;
  /** VerifyPin refuses the PIN step as auth does five minutes after the code. */
  pinStepEnded = false;
  /** GetWorkerEarnings refuses with this while set. */
  failEarnings: ConnectError | undefined;
  /** GetBalance and GetPayout refuse with this while set. */
  failReads: ConnectError | undefined;
  /** VerifyDeviceChallenge answers once this settles: a step-up still on its way. */
  stepUpAnswerHeld: Promise<void> | undefined;
  /** RevokeAllSessions refuses with this once. */
  failRevokeAll: ConnectError | undefined;
  /** UpdatePreferences refuses with this while set. */
  failPreferences: ConnectError | undefined;
  /** Makes the next RequestPayout's payout, then loses its answer (the phone hears a deadline). */
  loseNextPayoutAnswer = false;
  /** Makes the next CreateQrCode's code, then loses its answer. */
  loseNextQrAnswer = false;
  /** CreateQrCode's codes by idempotency key: the same key again answers its code, as qr does. */
  readonly qrByKey = new Map<string, QrCode>();
  /** M-Pesa's B2C result for payouts made from now on, with its own English text ("0": paid). */
  payoutResult = { code: "0", desc: "The service request is processed successfully." };

  tokens() {
    this.issued++;
    const accessToken = fakeJwt(this.userId, this.issued);
    this.validAccess.add(accessToken);
    this.sessions.push({ sessionId: `session-${this.issued}`, deviceId: "", userAgent: "okhttp/4.12.0", ipAddress: "", createdAt: new Date(), accessToken });
    return { accessToken, refreshToken: `refresh-${this.issued}-0123456789` };
  }

  /** A KES tip; `workerReceives`: what reached the wallet (the amount, unless a fee was taken). */
  addTip(amountMinor: bigint, status = TipStatus.SUCCEEDED, at = new Date(), workerReceives = amountMinor): Tip {
    const tip = create(TipSchema, {
      tipId: `tip-${this.tips.length + 1}`, workerId: this.userId, amount: { amountMinor, currency: "KES" }, workerReceives: { amountMinor: workerReceives, currency: "KES" }, status, createdAt: timestampFromDate(at),
    });
    this.tips.unshift(tip);
    if (status === TipStatus.SUCCEEDED) this.availableMinor += workerReceives;
    return tip;
  }

  /** Analytics' net since `start`: what reached the wallet (KES) of every succeeded tip, however many. */
  netSince(start: Date): bigint {
    return this.tips
      .filter((t) => t.status === TipStatus.SUCCEEDED && t.createdAt && timestampDate(t.createdAt) >= start && t.workerReceives?.currency === "KES")
      .reduce((sum, t) => sum + t.workerReceives!.amountMinor, 0n);
  }

  notify(title: string, body: string): InAppNotification {
    const n = create(InAppNotificationSchema, { notificationId: `9b1c2d3e-0000-4000-8000-${String(this.inbox.length + 1).padStart(12, "0")}`, templateKey: TemplateKey.TIP_RECEIVED, title, body, createdAt: timestampFromDate(new Date()) });
    this.inbox.unshift(n);
    return n;
  }

  count(method: string): number {
    return this.calls.filter((c) => c.method === method).length;
  }

  last(method: string): any {
    return [...this.calls].reverse().find((c) => c.method === method)?.request;
  }

  /** Auth's PIN check: a wrong PIN counts, the fifth in a row locks it. */
  private checkPin(pin: string): void {
    if (this.pinFailures >= PIN_MAX_FAILURES) throw pinLocked();
    if (pin !== this.pin) {
      this.pinFailures++;
      if (this.pinFailures >= PIN_MAX_FAILURES) throw pinLocked();
      throw new ConnectError(`wrong PIN; ${PIN_MAX_FAILURES - this.pinFailures} tries left before a lockout`, Code.PermissionDenied);
    }
    this.pinFailures = 0;
  }

  /** Auth's one spend of a step-up token, for the purpose its challenge named. */
  private spendStepUp(token: string, purpose: string): void {
    const madeFor = this.stepUpTokens.get(token);
    if (madeFor === undefined) throw new ConnectError("step_up_token: missing or used", Code.PermissionDenied);
    if (madeFor !== purpose) throw new ConnectError(`step_up_token: made for ${madeFor}, not ${purpose}`, Code.PermissionDenied);
    this.stepUpTokens.delete(token);
  }

  payoutSettingsMessage() {
    const s = this.payoutSettings;
    return {
      payoutPhoneMasked: s.phone ? `${s.phone.slice(0, 4)}******${s.phone.slice(-2)}` : "",
      autoPayout: s.autoPayout,
      autoPayoutMinimum: s.minimumMinor ? { amountMinor: s.minimumMinor, currency: "KES" } : undefined,
      automaticPayoutsFrom: s.automaticPayoutsFrom ? timestampFromDate(s.automaticPayoutsFrom) : undefined,
    };
  }

  /** As auth ends a session: its access token refused by the gateway from now on, its refresh token by auth. */
  private signOut(ctx: HandlerContext): void {
    this.authed(ctx);
    this.validAccess.delete(ctx.requestHeader.get("authorization")!.replace(/^Bearer /, ""));
    this.revokedThrough = this.issued;
  }

  private authed(ctx: HandlerContext): void {
    const token = ctx.requestHeader.get("authorization")?.replace(/^Bearer /, "") ?? "";
    if (!this.validAccess.has(token)) throw new ConnectError("access token missing or expired", Code.Unauthenticated);
  }

  transport(interceptors: Interceptor[]) {
    const gw = this;
    const record: Interceptor = (next) => async (req) => {
      if (gw.offline) throw new ConnectError("network request failed", Code.Unavailable);
      gw.calls.push({ method: req.method.name, request: req.message, authorization: req.header.get("authorization"), language: req.header.get("accept-language") });
      return next(req);
    };
    return createRouterTransport(
      (router) => {
        router.service(AuthService, {
          startPhoneVerification: () => ({ challengeId: CHALLENGE_ID }),
          // Auth's refusals as it words them (services/auth/src/login.ts, pin-guard.ts).
          verifyPhoneOtp: (req) => {
            if (req.otp !== gw.otp) throw new ConnectError("otp: wrong code; 4 tries left", Code.InvalidArgument);
            if (req.role !== Role.WORKER) throw new ConnectError("role: must be worker", Code.InvalidArgument);
            return gw.pin ? { pinRequired: true, pinSessionId: "pin-session-1" } : { tokens: gw.tokens(), newUser: true };
          },
          verifyPin: (req) => {
            if (gw.pinStepEnded) throw new ConnectError("this PIN step has expired or was used: verify the phone again", Code.FailedPrecondition);
            gw.checkPin(req.pin);
            return { tokens: gw.tokens() };
          },
          changePin: (req, ctx) => {
            gw.authed(ctx);
            gw.checkPin(req.currentPin);
            gw.pin = req.newPin;
            return {};
          },
          resetPin: (req) => {
            if (req.challengeId !== CHALLENGE_ID || req.otp !== gw.otp) throw new ConnectError("this code has expired, was used, had too many tries, or a newer one was sent: use the newest code or ask for a new one", Code.FailedPrecondition);
            gw.pin = req.newPin;
            gw.pinFailures = 0;
            return { tokens: gw.tokens() };
          },
          setPin: (req, ctx) => {
            gw.authed(ctx);
            gw.pin = req.pin;
            return {};
          },
          refreshSession: (req) => {
            const issued = /^refresh-(\d+)-/.exec(req.refreshToken);
            if (!issued) throw new ConnectError("refresh token unknown", Code.Unauthenticated);
            if (Number(issued[1]) <= gw.revokedThrough) throw new ConnectError("session revoked", Code.Unauthenticated);
            return { tokens: gw.tokens() };
          },
          registerDevice: (req, ctx) => {
            gw.authed(ctx);
            gw.checkPin(req.pin);
            const deviceId = `dev-${++gw.devicesMade}`;
            gw.devices.set(deviceId, req.publicKeyJwk);
            gw.deviceInfo.set(deviceId, { name: req.name, registeredAt: new Date() });
            return { device: { deviceId, name: req.name, publicKeyJwk: req.publicKeyJwk } };
          },
          listDevices: (_req, ctx) => {
            gw.authed(ctx);
            return {
              devices: [...gw.devices].map(([deviceId, publicKeyJwk]) => {
                const info = gw.deviceInfo.get(deviceId);
                return { deviceId, publicKeyJwk, name: info?.name ?? "", registeredAt: timestampFromDate(info?.registeredAt ?? new Date()), lastVerifiedAt: info?.lastVerifiedAt && timestampFromDate(info.lastVerifiedAt) };
              }),
            };
          },
          removeDevice: (req, ctx) => {
            gw.authed(ctx);
            if (!gw.devices.delete(req.deviceId)) throw new ConnectError("device_id: no such device of yours", Code.NotFound);
            gw.deviceInfo.delete(req.deviceId);
            return {};
          },
          createDeviceChallenge: (req, ctx) => {
            gw.authed(ctx);
            if (!gw.devices.has(req.deviceId)) throw new ConnectError("device_id: unknown device", Code.NotFound);
            const challenge = crypto.getRandomValues(new Uint8Array(32));
            const challengeId = `ch-${gw.challenges.size + 1}`;
            gw.challenges.set(challengeId, { deviceId: req.deviceId, challenge, purpose: req.purpose });
            return { challengeId, challenge };
          },
          verifyDeviceChallenge: async (req, ctx) => {
            gw.authed(ctx);
            await gw.stepUpAnswerHeld;
            const c = gw.challenges.get(req.challengeId);
            if (!c) throw new ConnectError("challenge_id: unknown", Code.NotFound);
            gw.challenges.delete(req.challengeId);
            const jwk = JSON.parse(gw.devices.get(c.deviceId)!) as { x: string; y: string };
            const point = new Uint8Array([4, ...fromB64url(jwk.x), ...fromB64url(jwk.y)]);
            if (!p256.verify(req.signature, c.challenge, point, { prehash: true, lowS: false })) {
              throw new ConnectError("signature: does not match the device key", Code.PermissionDenied);
            }
            const info = gw.deviceInfo.get(c.deviceId);
            if (info) info.lastVerifiedAt = new Date();
            const stepUpToken = `step-up-${++gw.stepUpsMade}-abcdef`;
            gw.stepUpTokens.set(stepUpToken, c.purpose);
            return { stepUpToken };
          },
          listSessions: (_req, ctx) => {
            gw.authed(ctx);
            const current = ctx.requestHeader.get("authorization")?.replace(/^Bearer /, "");
            return {
              sessions: gw.sessions.map(({ accessToken, createdAt, ...x }) => ({ ...x, createdAt: timestampFromDate(createdAt), lastUsedAt: timestampFromDate(createdAt), current: accessToken === current })),
            };
          },
          revokeSession: (req, ctx) => {
            gw.authed(ctx);
            const s = gw.sessions.find((x) => x.sessionId === req.sessionId);
            if (!s) throw new ConnectError("session_id: no such session of yours", Code.NotFound);
            gw.sessions = gw.sessions.filter((x) => x !== s);
            gw.validAccess.delete(s.accessToken);
            return {};
          },
          // As auth does: the session ends, and the gateway refuses its access token from then on.
          logout: (_req, ctx) => {
            gw.signOut(ctx);
            return {};
          },
          revokeAllSessions: (_req, ctx) => {
            gw.authed(ctx);
            const refused = gw.failRevokeAll;
            gw.failRevokeAll = undefined;
            if (refused) throw refused;
            gw.signOut(ctx);
            return { revoked: 1 };
          },
        });
        router.service(WalletService, {
          getBalance: (_req, ctx) => {
            gw.authed(ctx);
            if (gw.failReads) throw gw.failReads;
            return { balances: [{ available: { amountMinor: gw.availableMinor, currency: "KES" }, held: { amountMinor: gw.heldMinor, currency: "KES" } }] };
          },
          getWithdrawalLimits: (_req, ctx) => (gw.authed(ctx), { limits: gw.withdrawalLimits() }),
          getStatement: (req, ctx) => {
            gw.authed(ctx);
            gw.statementsAsked.push(`${req.year}-${req.month}`);
            const kes = (amountMinor: bigint) => ({ amountMinor, currency: "KES" });
            const day = (d: number) => timestampFromDate(new Date(req.year, req.month - 1, d, 12));
            return {
              openingBalance: kes(1_000_00n * BigInt(req.month)),
              closingBalance: kes(1_000_00n * BigInt(req.month) + 190_00n),
              rows: [
                { entryId: `e-${req.month}-1`, postedAt: day(3), description: "Tip received", amount: kes(200_00n), balanceAfter: kes(1_000_00n * BigInt(req.month) + 200_00n) },
                { entryId: `e-${req.month}-2`, postedAt: day(4), description: "Fee", amount: kes(-10_00n), balanceAfter: kes(1_000_00n * BigInt(req.month) + 190_00n) },
              ],
            };
          },
        });
        router.service(PaymentService, {
          listTips: (req, ctx) => {
            gw.authed(ctx);
            const all = gw.tips.filter((t) => req.status === TipStatus.UNSPECIFIED || t.status === req.status);
            const size = req.page?.pageSize || 20;
            // A keyset cursor, as payment's: the last tip of the page before, so tips arriving meanwhile change the tokens.
            const start = req.page?.pageToken ? all.findIndex((t) => t.tipId === req.page!.pageToken) + 1 : 0;
            const tips = all.slice(start, start + size);
            return { tips, page: { nextPageToken: start + size < all.length ? tips.at(-1)!.tipId : "" } };
          },
          requestPayout: (req, ctx) => {
            gw.authed(ctx);
            if (gw.failNextPayout) {
              const err = gw.failNextPayout;
              gw.failNextPayout = undefined;
              throw err;
            }
            gw.spendStepUp(req.stepUpToken, "payout");
            const seen = gw.payouts.get(req.idempotencyKey);
            if (seen) return { payout: { payoutId: seen.payoutId, status: PayoutStatus.PENDING, amount: { amountMinor: seen.amountMinor, currency: "KES" }, createdAt: timestampFromDate(seen.createdAt) }, replayed: true };
            const amountMinor = req.amount!.amountMinor;
            if (amountMinor > gw.availableMinor) throw new ConnectError("amount: more than your available balance", Code.FailedPrecondition);
            gw.availableMinor -= amountMinor;
            const payoutId = `payout-${gw.payouts.size + 1}`;
            const createdAt = new Date();
            gw.payouts.set(req.idempotencyKey, { payoutId, amountMinor, phone: req.mpesaPhone, polls: 0, result: gw.payoutResult, createdAt });
            if (gw.loseNextPayoutAnswer) {
              gw.loseNextPayoutAnswer = false;
              throw new ConnectError("the answer was lost on the way", Code.DeadlineExceeded);
            }
            return { payout: { payoutId, status: PayoutStatus.PENDING, amount: req.amount, createdAt: timestampFromDate(createdAt) } };
          },
          getPayoutSettings: (_req, ctx) => (gw.authed(ctx), { settings: gw.payoutSettingsMessage() }),
          // Payment's rules (services/payment/src/handlers/payouts.ts): replacing the number in force needs a
          // payout_number step-up and starts the cooling-off; automatic payout needs a number and at least KES 10.
          updatePayoutSettings: (req, ctx) => {
            gw.authed(ctx);
            const s = gw.payoutSettings;
            const min = req.autoPayoutMinimum?.amountMinor ?? 0n;
            if (req.autoPayout && min < 1_000n) throw new ConnectError("auto_payout_minimum must be at least 10 KES (the least a B2C pays out) when auto_payout is on", Code.InvalidArgument);
            const replaces = req.payoutPhone !== "" && s.phone !== "" && req.payoutPhone !== s.phone;
            if (replaces && !req.stepUpToken) throw new ConnectError("step_up_token: replacing the payout number needs the device's step-up (purpose payout_number), as a withdrawal does", Code.FailedPrecondition);
            if (replaces) gw.spendStepUp(req.stepUpToken, "payout_number");
            if (req.autoPayout && !(req.payoutPhone || s.phone)) throw new ConnectError("payout_phone: automatic payout needs a payout number", Code.InvalidArgument);
            if (replaces) s.automaticPayoutsFrom = new Date(Date.now() + 86_400_000);
            s.phone = req.payoutPhone || s.phone;
            s.autoPayout = req.autoPayout;
            s.minimumMinor = min;
            return { settings: gw.payoutSettingsMessage() };
          },
          getPayout: (req, ctx) => {
            gw.authed(ctx);
            if (gw.failReads) throw gw.failReads;
            const p = [...gw.payouts.values()].find((x) => x.payoutId === req.payoutId);
            if (!p) throw new ConnectError("payout_id: unknown", Code.NotFound);
            p.polls++;
            const done = p.polls > 1;
            const paid = p.result.code === "0";
            // Failed: its hold released, the amount back in the balance (once).
            if (p.polls === 2 && !paid) gw.availableMinor += p.amountMinor;
            const status = !done ? PayoutStatus.PENDING : paid ? PayoutStatus.SUCCEEDED : PayoutStatus.FAILED;
            return { payout: { payoutId: p.payoutId, amount: { amountMinor: p.amountMinor, currency: "KES" }, status, createdAt: timestampFromDate(p.createdAt), mpesaReceipt: done && paid ? "SIM123ABC" : "",
              resultCode: done ? p.result.code : "", resultMessage: done ? (paid ? "Sent to M-Pesa" : p.result.desc) : "" } };
          },
        });
        // Analytics' rules (services/analytics): today and this week are Nairobi's day and Monday-to-Sunday week.
        router.service(AnalyticsService, {
          getWorkerEarnings: (_req, ctx) => {
            gw.authed(ctx);
            if (gw.failEarnings) throw gw.failEarnings;
            const now = new Date();
            const period = (start: Date) => ({ net: { amountMinor: gw.netSince(start), currency: "KES" } });
            return { earnings: { workerId: gw.userId, today: period(nairobiDayStart(now)), thisWeek: period(nairobiWeekStart(now)) } };
          },
        });
        router.service(QrService, {
          listQrCodes: (req, ctx) => (gw.authed(ctx), { qrCodes: gw.qrCodes.filter((q) => q.ownerId === req.ownerId) }),
          getProfile: (req, ctx) => {
            gw.authed(ctx);
            if (gw.profileName === undefined) throw new ConnectError(`owner_id: no profile for ${req.ownerId}`, Code.NotFound);
            return { profile: create(ProfileSchema, { ownerKind: OwnerKind.WORKER, ownerId: req.ownerId, displayName: gw.profileName, active: true }) };
          },
          putProfile: (req, ctx) => {
            gw.authed(ctx);
            gw.profileName = req.displayName;
            return { profile: create(ProfileSchema, { ownerKind: req.ownerKind, ownerId: req.ownerId, displayName: req.displayName, active: true }) };
          },
          createQrCode: (req, ctx) => {
            gw.authed(ctx);
            const made = gw.qrByKey.get(req.idempotencyKey);
            if (made) return { qrCode: made };
            // As qr answers: a code shows its owner's name.
            if (gw.profileName === undefined) throw new ConnectError(`owner_id: ${req.ownerId} has no profile yet; set one with PutProfile first`, Code.FailedPrecondition);
            const q = create(QrCodeSchema, { qrCodeId: `qr-${gw.qrCodes.length + 1}`, shortCode: "K7M4QX", ownerKind: OwnerKind.WORKER, ownerId: req.ownerId, url: "http://127.0.0.1:8080/t/K7M4QX", status: QrCodeStatus.ACTIVE });
            gw.qrCodes.push(q);
            gw.qrByKey.set(req.idempotencyKey, q);
            if (gw.loseNextQrAnswer) {
              gw.loseNextQrAnswer = false;
              throw new ConnectError("the answer was lost", Code.DeadlineExceeded);
            }
            return { qrCode: q };
          },
          renderQrCode: (req, ctx) => {
            gw.authed(ctx);
            // As qr answers (codes.ts): a PNG is the bare code.
            if (req.format === ImageFormat.PNG && req.caption) throw new ConnectError("caption: PNG has no caption; use IMAGE_FORMAT_PRINT_SVG or IMAGE_FORMAT_PDF for a table card", Code.InvalidArgument);
            return { content: new Uint8Array([0x89, 0x50, 0x4e, 0x47]), contentType: "image/png" };
          },
        });
        router.service(NotificationService, {
          listInAppNotifications: (req, ctx) => {
            gw.authed(ctx);
            const unread = gw.inbox.filter((n) => !n.readAt);
            return { notifications: (req.unreadOnly ? unread : gw.inbox).slice(0, req.page?.pageSize || 20), unreadCount: unread.length };
          },
          markRead: (req, ctx) => {
            gw.authed(ctx);
            for (const n of gw.inbox) if (req.notificationIds.includes(n.notificationId)) n.readAt = timestampFromDate(new Date());
            return {};
          },
          getPreferences: (_req, ctx) => (gw.authed(ctx), { preferences: gw.preferences }),
          updatePreferences: (req, ctx) => {
            gw.authed(ctx);
            if (gw.failPreferences) throw gw.failPreferences;
            gw.preferences = req.preferences!;
            return { preferences: gw.preferences };
          },
          registerPushToken: (req, ctx) => (gw.authed(ctx), gw.pushTokens.add(`${req.platform}:${req.token}`), {}),
          unregisterPushToken: (req, ctx) => {
            gw.authed(ctx);
            for (const t of gw.pushTokens) if (t.endsWith(`:${req.token}`)) gw.pushTokens.delete(t);
            return {};
          },
        });
      },
      { transport: { interceptors: [...interceptors, record] } },
    );
  }
}
