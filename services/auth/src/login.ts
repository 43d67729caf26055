import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { type BatchLimits, budgetNetwork, clockOf, consumeOrRefuse, DependencyUnavailableError, emitEvent, fieldError, hmacSha256, inBatches, InvalidStateError, normalisePhone, parseKenyanMobile, PermissionDeniedError, type Pool, refuseIfSpent, withTransaction } from "@ttip/runtime";
import { Locale, Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import type { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { UserRegisteredSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { audit, AuditAction } from "./audit.js";
import { coolDownOrRefuse, type AuthCore } from "./core.js";
import { sameBytes, sixDigitCode } from "./crypto.js";
import { hashPin, weakPinReason } from "./pin.js";
import { checkPin } from "./pin-guard.js";
import { clientAddressOf, userAgentOf } from "./request.js";
import { forgetSessions, openSession, refreshSession, requireSession, requireSessionLive, revokeSessions, tokenPair } from "./sessions.js";
import { getUser, USER_COLUMNS, roleName, type UserRow } from "./users.js";

type Impl = ServiceImpl<typeof AuthService>;

const OTP_TTL_MS = 5 * 60_000;
const OTP_MAX_TRIES = 5;
const PIN_SESSION_TTL_MS = 5 * 60_000;
/** How long after a verified OTP the same challenge may still reset the PIN. */
const RESET_WINDOW = "10 minutes";

const otpDigest = (core: AuthCore, challengeId: string, code: string) => hmacSha256(core.sealer.otpKey, `${challengeId}:${code}`);

/** How long a sign-in code is kept past its expiry (support's look at a failed sign-in). */
export const OTP_KEPT_AFTER_EXPIRY_MS = 86_400_000;
/** Codes deleted per statement, and statements per pass (the rest waits for the next pass). */
const OTP_PRUNE: BatchLimits = { size: 1_000, maxBatches: 20 };

/**
 * Deletes sign-in codes expired over a day before `now`: each holds the full number it was sent to, known to the
 * platform or not, and was kept for ever. Bounded by OTP_PRUNE.
 */
export function pruneOtpChallenges(pool: Pool, now: number): Promise<number> {
  const before = new Date(now - OTP_KEPT_AFTER_EXPIRY_MS);
  return inBatches(OTP_PRUNE, async (size) => (await pool.query(
    "DELETE FROM auth.otp_challenges WHERE challenge_id IN (SELECT challenge_id FROM auth.otp_challenges WHERE expires_at < $1 LIMIT $2)", [before, size])).rowCount ?? 0);
}

function weakPin(field: string, pin: string, birthYear?: number | null): void {
  const reason = weakPinReason(pin, birthYear);
  if (reason) throw fieldError(field, reason);
}

const userByPhone = async (core: AuthCore, phone: string): Promise<UserRow | undefined> =>
  (await core.ctx.pool.query(`SELECT ${USER_COLUMNS} FROM auth.users WHERE phone = $1`, [phone])).rows[0];

/**
 * Checks a code against its challenge, counting the try first; returns the phone on success.
 * `condition` reads $3, the service clock's now (a code's expiry is a rule a test moves past).
 */
async function checkOtp(core: AuthCore, challengeId: string, otp: string, ip: string, condition: string): Promise<{ phone: string; locale: number }> {
  const { rows } = await core.ctx.pool.query(
    `UPDATE auth.otp_challenges SET attempts = attempts + 1
      WHERE challenge_id = $1 AND attempts < $2 AND consumed_at IS NULL AND (${condition})
      RETURNING challenge_id::text, phone, locale, code_hash, attempts`,
    [challengeId, OTP_MAX_TRIES, new Date(clockOf(core.ctx).now())],
  );
  const ch = rows[0];
  if (!ch) throw new InvalidStateError("this code has expired, was used, had too many tries, or a newer one was sent: use the newest code or ask for a new one");
  // The id as stored: PostgreSQL finds the row by any spelling of it (capitals, as iOS writes UUIDs; braces), and the
  // right code hashed under the id as sent was counted a wrong try.
  if (!sameBytes(otpDigest(core, ch.challenge_id, otp), ch.code_hash)) {
    const user = await userByPhone(core, ch.phone);
    await audit(core.ctx.pool, AuditAction.LOGIN_FAILED, { userId: user?.user_id, ip, detail: `wrong OTP (${ch.attempts} of ${OTP_MAX_TRIES})` });
    throw fieldError("otp", `wrong code; ${OTP_MAX_TRIES - ch.attempts} tries left`);
  }
  return { phone: ch.phone, locale: ch.locale };
}

/** Phone sign-in, PINs and sessions: one factory per RPC below. */
export function loginHandlers(core: AuthCore): Partial<ServiceImpl<typeof AuthService>> {
  return {
    startPhoneVerification: startPhoneVerificationHandler(core),
    verifyPhoneOtp: verifyPhoneOtpHandler(core),
    setPin: setPinHandler(core),
    verifyPin: verifyPinHandler(core),
    changePin: changePinHandler(core),
    resetPin: resetPinHandler(core),
    refreshSession: refreshSessionHandler(core),
    logout: logoutHandler(core),
  };
}

function startPhoneVerificationHandler(core: AuthCore): Impl["startPhoneVerification"] {
  const { pool } = core.ctx;
  const { config } = core;
  return async function (req, ctx) {
    const phone = normalisePhone(req.phone);
    const ip = clientAddressOf(ctx);
    // Known and unknown numbers take the same path and get the same answer.
    const otps = core.ctx.metrics.counter("ttip_auth_otp_total", "OTP requests: sent, refused by a limit (and which), or not delivered.", ["outcome"]);
    const limited = async (p: Promise<void>, which: string) => {
      try {
        await p;
      } catch (err) {
        otps.inc({ outcome: `refused_${which}` });
        throw err;
      }
    };
    const country = config.otpCountryCodes.find((c) => phone.startsWith(c));
    if (!country || (country === "254" && !parseKenyanMobile(phone))) {
      otps.inc({ outcome: "refused_country" });
      throw fieldError("phone", `sign-in codes are sent only to mobile numbers in ${config.otpCountryCodes.map((c) => `+${c}`).join(", ")}`, "phone.country");
    }
    // By network: an IPv6 client's /64 is theirs to rotate through, address by address. A network with no codes left
    // is refused first, spending nothing: refused after them, it spent the number's cool-down and hourly codes, and
    // kept the number's owner from signing in, at no cost to itself.
    const network = budgetNetwork(ip);
    await limited(refuseIfSpent(core.limits.otpPerIp, network, "too many codes from this network"), "network");
    await limited(coolDownOrRefuse(core.ctx, `auth-otp-resend:${phone}`, config.otpResendSeconds, "a code was just sent to this number"), "resend");
    await limited(consumeOrRefuse(core.limits.otpPerPhone, phone, "too many codes for this number"), "phone");
    await limited(consumeOrRefuse(core.limits.otpPerIp, network, "too many codes from this network"), "network");
    // Daily budgets against SMS pumping: per operator range, and in all (alert on ttip_auth_otp_total{outcome=~"refused_(prefix|total)"}).
    await limited(consumeOrRefuse(core.limits.otpPerPrefix, phone.slice(0, 6), "today's budget of codes to numbers in this range is spent"), "prefix");
    await limited(consumeOrRefuse(core.limits.otpTotal, "all", "today's budget of sign-in codes is spent"), "total");
    const challengeId = randomUUID();
    const code = sixDigitCode();
    const now = clockOf(core.ctx).now();
    const expiresAt = new Date(now + OTP_TTL_MS);
    const locale = req.locale === Locale.SW ? Locale.SW : Locale.EN;
    // A new code ends the number's earlier ones not yet verified: each had its own tries, so codes asked for
    // one after another gave an attacker without the phone five guesses per code at once.
    await pool.query(
      `WITH replaced AS (
         UPDATE auth.otp_challenges SET expires_at = $6 WHERE phone = $2 AND consumed_at IS NULL AND verified_at IS NULL AND expires_at > $6
       )
       INSERT INTO auth.otp_challenges (challenge_id, phone, locale, code_hash, expires_at) VALUES ($1, $2, $3, $4, $5)`,
      [challengeId, phone, locale, otpDigest(core, challengeId, code), expiresAt, new Date(now)],
    );
    try {
      await core.otpSender.send({ phone, code, locale: locale === Locale.SW ? "sw" : "en", challengeId });
    } catch (err) {
      core.ctx.logger.warn({ err: (err as Error).message, challengeId }, "OTP delivery failed");
      otps.inc({ outcome: "failed" });
      throw new DependencyUnavailableError("the code could not be sent; try again shortly");
    }
    otps.inc({ outcome: "sent" });
    return {
      challengeId,
      expiresAt: timestampFromDate(expiresAt),
      resendAfter: timestampFromDate(new Date(now + config.otpResendSeconds * 1000)),
    };
  };
}

function verifyPhoneOtpHandler(core: AuthCore): Impl["verifyPhoneOtp"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const ip = clientAddressOf(ctx);
    const { phone, locale } = await checkOtp(core, req.challengeId, req.otp, ip, "verified_at IS NULL AND expires_at > $3");
    const role = req.role === Role.UNSPECIFIED ? Role.CUSTOMER : req.role;
    const outcome = await withTransaction(pool, async (tx) => {
      const claimed = await tx.query(
        "UPDATE auth.otp_challenges SET verified_at = $2 WHERE challenge_id = $1 AND verified_at IS NULL RETURNING 1",
        [req.challengeId, new Date(clockOf(core.ctx).now())],
      );
      if (!claimed.rowCount) throw new InvalidStateError("this code was already used");
      let user: UserRow | undefined = (await tx.query(`SELECT ${USER_COLUMNS} FROM auth.users WHERE phone = $1 FOR UPDATE`, [phone])).rows[0];
      let newUser = false;
      if (!user) {
        const inserted = await tx.query(
          `INSERT INTO auth.users (user_id, phone, roles, locale) VALUES ($1, $2, $3, $4) ON CONFLICT (phone) DO NOTHING RETURNING ${USER_COLUMNS}`,
          [randomUUID(), phone, [roleName(role)], locale],
        );
        user = inserted.rows[0] ?? (await tx.query(`SELECT ${USER_COLUMNS} FROM auth.users WHERE phone = $1 FOR UPDATE`, [phone])).rows[0];
        newUser = !!inserted.rows[0];
        if (newUser) {
          await emitEvent(tx, "auth", UserRegisteredSchema, {
            userId: user!.user_id,
            role: roleName(role),
            locale: locale === Locale.SW ? "sw" : "en",
          });
        }
      }
      // Refused before any PIN is tried: a PIN step would let the phone's holder test PIN guesses (a right one
      // answered "blocked", a wrong one "wrong PIN") and clear the lockout with the right one.
      if (user!.blocked_at) throw new PermissionDeniedError("this account is blocked: contact support");
      if (user!.pin_hash) {
        // The OTP proved the phone; the PIN is the second step. The challenge
        // stays unconsumed so ResetPin can still use it for a forgotten PIN.
        const pinSessionId = randomUUID();
        await tx.query("INSERT INTO auth.pin_sessions (pin_session_id, user_id, expires_at) VALUES ($1, $2, $3)", [
          pinSessionId, user!.user_id, new Date(clockOf(core.ctx).now() + PIN_SESSION_TTL_MS),
        ]);
        return { kind: "pin" as const, pinSessionId };
      }
      await tx.query("UPDATE auth.otp_challenges SET consumed_at = now() WHERE challenge_id = $1", [req.challengeId]);
      const session = await openSession(core, tx, {
        userId: user!.user_id, roles: user!.roles, userAgent: userAgentOf(ctx), ip, pinVerified: false,
      });
      await audit(tx, AuditAction.LOGIN, { userId: user!.user_id, ip, detail: newUser ? "sign-up by OTP" : "login by OTP (no PIN yet)" });
      return { kind: "session" as const, session, newUser };
    });
    if (outcome.kind === "pin") return { pinRequired: true, pinSessionId: outcome.pinSessionId };
    return { tokens: await tokenPair(core, outcome.session), newUser: outcome.newUser };
  };
}

function setPinHandler(core: AuthCore): Impl["setPin"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    const user = await getUser(pool, caller.subject);
    if (user.pin_hash) throw new InvalidStateError("a PIN is already set: use ChangePin or ResetPin");
    weakPin("pin", req.pin, user.birth_year);
    const pinHash = await hashPin(req.pin);
    await withTransaction(pool, async (tx) => {
      // Signed out everywhere while the PIN was hashed: a PIN chosen by the revoked session would stay the account's.
      await requireSessionLive(tx, sessionId);
      const set = await tx.query("UPDATE auth.users SET pin_hash = $2, updated_at = now() WHERE user_id = $1 AND pin_hash IS NULL", [
        caller.subject, pinHash,
      ]);
      if (!set.rowCount) throw new InvalidStateError("a PIN is already set: use ChangePin or ResetPin");
      // Choosing the PIN counts as proving it for this session (e.g. to register a device next).
      if (sessionId) await tx.query("UPDATE auth.sessions SET pin_verified = true WHERE session_id = $1 AND user_id = $2", [sessionId, caller.subject]);
      await audit(tx, AuditAction.PIN_SET, { userId: caller.subject, actorUserId: caller.subject, ip });
    });
    // The session changed (PIN proven), it was not revoked.
    if (sessionId) await forgetSessions(core, [{ session_id: sessionId, user_id: caller.subject }], false);
    return {};
  };
}

function verifyPinHandler(core: AuthCore): Impl["verifyPin"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const ip = clientAddressOf(ctx);
    const { rows } = await pool.query(
      "SELECT user_id FROM auth.pin_sessions WHERE pin_session_id = $1 AND used_at IS NULL AND expires_at > $2",
      [req.pinSessionId, new Date(clockOf(core.ctx).now())],
    );
    if (!rows[0]) throw new InvalidStateError("this PIN step has expired or was used: verify the phone again");
    const userId: string = rows[0].user_id;
    // Blocked since the code was verified: no PIN is tried either.
    if ((await getUser(pool, userId)).blocked_at) throw new PermissionDeniedError("this account is blocked: contact support");
    if (req.deviceId) {
      const device = await pool.query("SELECT 1 FROM auth.devices WHERE device_id = $1 AND user_id = $2 AND removed_at IS NULL", [req.deviceId, userId]);
      if (!device.rowCount) throw fieldError("device_id", "no such device on this account");
    }
    const checked = await checkPin(core, userId, req.pin, ip);
    const session = await withTransaction(pool, async (tx) => {
      const used = await tx.query("UPDATE auth.pin_sessions SET used_at = now() WHERE pin_session_id = $1 AND used_at IS NULL", [req.pinSessionId]);
      if (!used.rowCount) throw new InvalidStateError("this PIN step was already used");
      // Locked, as the other ways in lock it: a block or a role change committing meanwhile would revoke every
      // session but this one, which would keep the roles read before it.
      const user = await getUser(tx, userId, true);
      // The PIN reset or changed since it was checked: that change signed out whoever knew the old one.
      if (user.pin_hash !== checked) throw new InvalidStateError("the PIN was changed meanwhile: verify the phone again");
      const s = await openSession(core, tx, {
        userId, roles: user.roles, deviceId: req.deviceId || undefined, userAgent: userAgentOf(ctx), ip, pinVerified: true,
      });
      await audit(tx, AuditAction.LOGIN, { userId, ip, detail: "login by OTP and PIN" });
      return s;
    });
    return { tokens: await tokenPair(core, session) };
  };
}

function changePinHandler(core: AuthCore): Impl["changePin"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    const user = await getUser(pool, caller.subject);
    weakPin("new_pin", req.newPin, user.birth_year);
    const checked = await checkPin(core, caller.subject, req.currentPin, ip);
    const pinHash = await hashPin(req.newPin);
    const revoked = await withTransaction(pool, async (tx) => {
      // Reset meanwhile (by its owner, who signed out whoever knew the old PIN): not undone by the old PIN's holder.
      if ((await getUser(tx, caller.subject, true)).pin_hash !== checked) throw new InvalidStateError("the PIN was changed meanwhile: sign in again");
      await requireSessionLive(tx, sessionId);
      await tx.query("UPDATE auth.users SET pin_hash = $2, updated_at = now() WHERE user_id = $1", [caller.subject, pinHash]);
      // A PIN is changed because someone else may know it: the sessions they opened with it end (this one stays).
      const revoked = await revokeSessions(tx, "user_id = $1 AND session_id IS DISTINCT FROM $2", [caller.subject, sessionId ?? null], "PIN changed");
      await audit(tx, AuditAction.PIN_CHANGED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `${revoked.length} other sessions revoked` });
      return revoked;
    });
    await forgetSessions(core, revoked);
    return {};
  };
}

function resetPinHandler(core: AuthCore): Impl["resetPin"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const ip = clientAddressOf(ctx);
    // A weak PIN is refused before the code is tried, so it costs no OTP try. The birth year is
    // checked only after the code: before it, the answer must not tell whether the number has an account.
    weakPin("new_pin", req.newPin);
    // A fresh code: unverified and unexpired, or verified (by VerifyPhoneOtp) within the reset window.
    const { phone } = await checkOtp(core, req.challengeId, req.otp, ip,
      `(verified_at IS NULL AND expires_at > $3) OR verified_at > $3::timestamptz - interval '${RESET_WINDOW}'`);
    const user = await userByPhone(core, phone);
    if (!user) throw new InvalidStateError("no account uses this phone number: sign up instead");
    weakPin("new_pin", req.newPin, user.birth_year);
    const pinHash = await hashPin(req.newPin);
    const { session, revoked } = await withTransaction(pool, async (tx) => {
      const consumed = await tx.query(
        "UPDATE auth.otp_challenges SET consumed_at = now(), verified_at = coalesce(verified_at, $2) WHERE challenge_id = $1 AND consumed_at IS NULL",
        [req.challengeId, new Date(clockOf(core.ctx).now())],
      );
      if (!consumed.rowCount) throw new InvalidStateError("this code was already used");
      const before = await getUser(tx, user.user_id, true);
      await tx.query(
        // pin_reset_at: keys added within the hold after it approve no withdrawal (RegisterDevice, payoutHoldAfterReset).
        "UPDATE auth.users SET pin_hash = $2, pin_failures = 0, lockouts = 0, locked_until = NULL, pin_reset_at = $3, updated_at = now() WHERE user_id = $1",
        [user.user_id, pinHash, new Date(clockOf(core.ctx).now())],
      );
      // Whoever knew the old PIN loses every session it opened, and the proofs those asked for (a challenge, a step-up
      // not yet used, or spent on a payout not stored, whose retry verifies again), which would otherwise approve a
      // payout for their minutes after the reset, past its hold.
      const revoked = await revokeSessions(tx, "user_id = $1", [user.user_id], "PIN reset");
      await tx.query("UPDATE auth.device_challenges SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", [user.user_id]);
      await tx.query("UPDATE auth.step_up_tokens SET used_at = COALESCE(used_at, now()), expires_at = $2 WHERE user_id = $1 AND expires_at > $2", [
        user.user_id, new Date(clockOf(core.ctx).now()),
      ]);
      // The keys already added approve no withdrawal for the hold either: one may be on a phone the worker lost or
      // handed on, signed out but holding its key, which a SIM's holder would use after this reset.
      await tx.query(
        `UPDATE auth.devices SET payout_held_until = greatest(payout_held_until, $2::timestamptz + $3::float8 * interval '1 millisecond')
          WHERE user_id = $1 AND removed_at IS NULL`,
        [user.user_id, new Date(clockOf(core.ctx).now()), core.config.payoutHoldAfterPinResetMs],
      );
      const session = await openSession(core, tx, {
        userId: user.user_id, roles: before.roles, userAgent: userAgentOf(ctx), ip, pinVerified: true,
      });
      await audit(tx, AuditAction.PIN_RESET, { userId: user.user_id, actorUserId: user.user_id, ip, detail: `by OTP; ${revoked.length} sessions revoked` });
      if (before.locked_until && before.locked_until.getTime() > clockOf(core.ctx).now()) {
        await audit(tx, AuditAction.UNLOCK, { userId: user.user_id, actorUserId: user.user_id, ip, detail: "PIN reset by OTP" });
      }
      return { session, revoked };
    });
    await forgetSessions(core, revoked);
    return { tokens: await tokenPair(core, session) };
  };
}

function refreshSessionHandler(core: AuthCore): Impl["refreshSession"] {
  return async function (req, ctx) {
    return { tokens: await refreshSession(core, req.refreshToken, clientAddressOf(ctx)) };
  };
}

function logoutHandler(core: AuthCore): Impl["logout"] {
  const { pool } = core.ctx;
  return async function (_req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    if (!sessionId) throw new InvalidStateError("this token names no session");
    const revoked = await withTransaction(pool, async (tx) => {
      const r = await revokeSessions(tx, "session_id = $1 AND user_id = $2", [sessionId, caller.subject], "logout");
      if (r.length) await audit(tx, AuditAction.SESSION_REVOKED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `logout ${sessionId}` });
      return r;
    });
    await forgetSessions(core, revoked);
    return {};
  };
}
