import { createPublicKey, randomBytes, randomUUID, verify, type JsonWebKey } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { clockOf, DomainError, emitEvent, fieldError, InvalidStateError, NAIROBI_OFFSET_MS, NotFoundError, optionalTimestamp, PermissionDeniedError, type Queryable, withTransaction } from "@ttip/runtime";
import { DeviceSchema, type Device } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { DeviceRegisteredSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { audit, AuditAction } from "./audit.js";
import type { AuthCore } from "./core.js";
import { opaqueToken, sha256 } from "./crypto.js";
import { checkPin } from "./pin-guard.js";
import { forgetSessions, invalidateSessionList, requireSession, requireSessionLive, revokeSessions, sessionState } from "./sessions.js";
import { getUser } from "./users.js";

type Impl = ServiceImpl<typeof AuthService>;

const CHALLENGE_TTL_MS = 2 * 60_000;
export const STEP_UP_TTL_MS = 5 * 60_000;
/**
 * Keys an account keeps: a worker's phones and browsers, with room to spare. A browser signed out forgets its key, and
 * its next withdrawal adds another; past this, the key used longest ago is retired (retireUnusedKeys), not refused.
 */
export const MAX_DEVICE_KEYS = 10;

/** An ES256 public key as a JWK (kty EC, crv P-256), reduced to its public members; INVALID_ARGUMENT otherwise. */
export function parseDevicePublicKey(json: string): JsonWebKey {
  let jwk: Record<string, unknown>;
  try {
    jwk = JSON.parse(json);
  } catch {
    throw fieldError("public_key_jwk", "not JSON");
  }
  if (jwk === null || typeof jwk !== "object") throw fieldError("public_key_jwk", "not a JWK object");
  if (jwk.kty !== "EC" || jwk.crv !== "P-256") throw fieldError("public_key_jwk", "must be an ES256 key (kty EC, crv P-256)");
  if ("d" in jwk) throw fieldError("public_key_jwk", "this is a private key; send only the public key");
  const key = { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y } as JsonWebKey;
  try {
    createPublicKey({ key, format: "jwk" }); // refuses points not on the curve
  } catch {
    throw fieldError("public_key_jwk", "not a valid P-256 public key");
  }
  return key;
}

/** The columns toDevice reads (named, so the statements reading them are prepared). */
const DEVICE_COLUMNS = "device_id, name, public_key_jwk, registered_at, last_verified_at";

function toDevice(r: { device_id: string; name: string; public_key_jwk: string; registered_at: Date; last_verified_at: Date | null }): Device {
  return create(DeviceSchema, {
    deviceId: r.device_id,
    name: r.name,
    publicKeyJwk: r.public_key_jwk,
    registeredAt: timestampFromDate(r.registered_at),
    lastVerifiedAt: optionalTimestamp(r.last_verified_at),
  });
}

async function ownDevice(db: Queryable, deviceId: string, userId: string) {
  const { rows } = await db.query("SELECT device_id FROM auth.devices WHERE device_id = $1 AND user_id = $2 AND removed_at IS NULL", [deviceId, userId]);
  if (!rows[0]) throw new NotFoundError(`device ${deviceId} not found`);
}

/** Device keys and biometric unlock: the device proves possession of its key by signing a one-time challenge. */
export function deviceHandlers(core: AuthCore): Partial<ServiceImpl<typeof AuthService>> {
  return {
    registerDevice: registerDeviceHandler(core),
    listDevices: listDevicesHandler(core),
    removeDevice: removeDeviceHandler(core),
    createDeviceChallenge: createDeviceChallengeHandler(core),
    verifyDeviceChallenge: verifyDeviceChallengeHandler(core),
  };
}

function registerDeviceHandler(core: AuthCore): Impl["registerDevice"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    // Only a session that proved the PIN may add a key that later stands in for it.
    const state = sessionId ? await sessionState(core, sessionId) : undefined;
    if (!state?.pinVerified) throw new InvalidStateError("register a device after logging in with the PIN");
    const jwk = parseDevicePublicKey(req.publicKeyJwk);
    const checked = await checkPin(core, caller.subject, req.pin, ip);
    const device = await withTransaction(pool, async (tx) => {
      // The PIN changed since it was checked (that change signs out whoever knew the old one): no key on the old PIN.
      if ((await getUser(tx, caller.subject, true)).pin_hash !== checked) throw new InvalidStateError("the PIN was changed meanwhile: enter the new one");
      await requireSessionLive(tx, sessionId);
      const { rows } = await tx.query(
        // The session that added the key is on that phone: removing the device ends it (removeDevice). A key added
        // within the hold after a PIN reset by SMS code approves no withdrawal until it ends (payoutHoldAfterReset).
        // (The end of a hold already past, or of none after no reset, holds nothing.)
        `INSERT INTO auth.devices (device_id, user_id, name, public_key_jwk, registered_session_id, payout_held_until)
         SELECT $1, $2, $3, $4, $5, u.pin_reset_at + $6::float8 * interval '1 millisecond' FROM auth.users u WHERE u.user_id = $2
         RETURNING ${DEVICE_COLUMNS}`,
        [randomUUID(), caller.subject, req.name, JSON.stringify(jwk), sessionId, core.config.payoutHoldAfterPinResetMs],
      );
      await audit(tx, AuditAction.DEVICE_REGISTERED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `device ${rows[0].device_id}` });
      const retired = await retireUnusedKeys(tx, caller.subject, ip);
      // Told to the user by SMS (notification): a key added from a session someone else holds would approve their withdrawals.
      await emitEvent(tx, "auth", DeviceRegisteredSchema, { userId: caller.subject, deviceId: rows[0].device_id, name: req.name });
      return { row: rows[0], retired };
    });
    // Its sessions' device changed: the cached list showed the retired key's for up to its TTL.
    if (device.retired) await invalidateSessionList(core, caller.subject);
    return { device: toDevice(device.row) };
  };
}

/**
 * Retires the account's keys past MAX_DEVICE_KEYS, those used longest ago (the user row is locked: getUser). A retired
 * key approves nothing more; its phone's next step-up finds it gone and adds a key with the PIN. Its sessions stay,
 * tied to no device: retiring is not a report of a lost phone (RemoveDevice). Returns whether any was retired.
 */
async function retireUnusedKeys(tx: Queryable, userId: string, ip: string): Promise<boolean> {
  const { rows } = await tx.query<{ device_id: string }>(
    `UPDATE auth.devices SET removed_at = now() WHERE device_id IN (
       SELECT device_id FROM auth.devices WHERE user_id = $1 AND removed_at IS NULL
        ORDER BY coalesce(last_verified_at, registered_at) DESC, registered_at DESC OFFSET $2)
     RETURNING device_id`,
    [userId, MAX_DEVICE_KEYS],
  );
  if (!rows.length) return false;
  const retired = rows.map((r) => r.device_id);
  await endStepUps(tx, retired);
  // Its sessions are tied to no device from now on: the removal of any phone ends them (as sessions that may be on a
  // lost phone), where tied to a key no longer listed, no removal could.
  await tx.query("UPDATE auth.sessions SET device_id = NULL WHERE device_id = ANY($1::uuid[])", [retired]);
  for (const { device_id } of rows) {
    await audit(tx, AuditAction.DEVICE_REMOVED, { userId, actorUserId: userId, ip, detail: `device ${device_id} retired: over ${MAX_DEVICE_KEYS} keys, the one used longest ago` });
  }
  return true;
}

/** Outstanding proofs from keys removed or retired die with them. */
async function endStepUps(tx: Queryable, deviceIds: string[]): Promise<void> {
  await tx.query("UPDATE auth.step_up_tokens SET used_at = now() WHERE device_id = ANY($1::uuid[]) AND used_at IS NULL", [deviceIds]);
}

function listDevicesHandler(core: AuthCore): Impl["listDevices"] {
  const { pool } = core.ctx;
  return async function (_req, ctx) {
    const { caller } = await requireSession(core, ctx);
    const { rows } = await pool.query(`SELECT ${DEVICE_COLUMNS} FROM auth.devices WHERE user_id = $1 AND removed_at IS NULL ORDER BY registered_at`, [caller.subject]);
    return { devices: rows.map(toDevice) };
  };
}

function removeDeviceHandler(core: AuthCore): Impl["removeDevice"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    const ended = await withTransaction(pool, async (tx) => {
      await ownDevice(tx, req.deviceId, caller.subject);
      await tx.query("UPDATE auth.devices SET removed_at = now() WHERE device_id = $1", [req.deviceId]);
      await endStepUps(tx, [req.deviceId]);
      await audit(tx, AuditAction.DEVICE_REMOVED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `device ${req.deviceId}` });
      // So do its sessions, which could add a key of their own and approve withdrawals with it: the one that added
      // the key, those tied to it (signed in naming it, or proved with it), and those tied to no device, which may be
      // on the lost phone too (signed in there again without naming its key). Not the remover's own, when they remove
      // the phone they hold, nor those tied to the worker's other phones.
      return revokeSessions(tx,
        `(device_id = $1 OR session_id = (SELECT registered_session_id FROM auth.devices WHERE device_id = $1) OR (device_id IS NULL AND user_id = $3))
          AND session_id IS DISTINCT FROM $2::uuid`,
        [req.deviceId, sessionId ?? null, caller.subject], "device removed");
    });
    await forgetSessions(core, ended);
    return {};
  };
}

/**
 * Proofs held after a PIN reset by SMS code (payoutHoldAfterReset): those that move money or say where it goes, and
 * the console's (refunds, suspense matches, payout releases, roles), which a SIM's holder would reach the same way.
 */
const HELD_PURPOSES = new Set(["payout", "payout_number", "admin"]);

/**
 * Refuses a money proof from a key within the hold after a PIN reset by SMS code: a SIM's holder can reset the PIN,
 * add a key (or use one a lost phone kept) and pay out to any number within minutes. Every key the account had at the
 * reset is held (ResetPin), and each added within the hold after it (RegisterDevice).
 */
async function payoutHoldAfterReset(core: AuthCore, deviceId: string, userId: string, purpose: string): Promise<void> {
  const { rows } = await core.ctx.pool.query("SELECT payout_held_until FROM auth.devices WHERE device_id = $1 AND user_id = $2", [deviceId, userId]);
  const until: Date | null | undefined = rows[0]?.payout_held_until;
  if (!until || until.getTime() <= clockOf(core.ctx).now()) return;
  const nairobi = new Date(until.getTime() + NAIROBI_OFFSET_MS).toISOString();
  throw new PayoutsHeldError(
    `after a PIN reset by SMS code, ${purpose === "admin" ? "admin actions" : "withdrawals"} wait until ${nairobi.slice(0, 10)} ${nairobi.slice(11, 16)} Nairobi time: if you did not reset your PIN, call support`,
    { held_until: until.toISOString() },
  );
}

/** FAILED_PRECONDITION with its own reason, so the apps can say when withdrawals resume. */
class PayoutsHeldError extends DomainError {
  readonly code = Code.FailedPrecondition;
  readonly reason = "PAYOUTS_HELD_AFTER_PIN_RESET";
}

function createDeviceChallengeHandler(core: AuthCore): Impl["createDeviceChallenge"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller } = await requireSession(core, ctx);
    await ownDevice(pool, req.deviceId, caller.subject);
    if (HELD_PURPOSES.has(req.purpose)) await payoutHoldAfterReset(core, req.deviceId, caller.subject, req.purpose);
    const challengeId = randomUUID();
    const challenge = randomBytes(32);
    const expiresAt = new Date(clockOf(core.ctx).now() + CHALLENGE_TTL_MS);
    await pool.query(
      "INSERT INTO auth.device_challenges (challenge_id, device_id, user_id, purpose, challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
      [challengeId, req.deviceId, caller.subject, req.purpose, challenge, expiresAt],
    );
    return { challengeId, challenge, expiresAt: timestampFromDate(expiresAt) };
  };
}

function verifyDeviceChallengeHandler(core: AuthCore): Impl["verifyDeviceChallenge"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    const found = await pool.query("SELECT 1 FROM auth.device_challenges WHERE challenge_id = $1 AND user_id = $2", [req.challengeId, caller.subject]);
    if (!found.rowCount) throw new NotFoundError(`challenge ${req.challengeId} not found`);
    // One try per challenge: a wrong signature spends it too.
    const { rows } = await pool.query(
      `UPDATE auth.device_challenges c SET used_at = now()
         FROM auth.devices d
        WHERE c.challenge_id = $1 AND c.used_at IS NULL AND c.expires_at > $2
          AND d.device_id = c.device_id AND d.removed_at IS NULL
        RETURNING c.device_id, c.purpose, c.challenge, d.public_key_jwk`,
      [req.challengeId, new Date(clockOf(core.ctx).now())],
    );
    const ch = rows[0];
    if (!ch) throw new InvalidStateError("this challenge was used or has expired: ask for a new one");
    const key = createPublicKey({ key: JSON.parse(ch.public_key_jwk), format: "jwk" });
    const valid = verify("sha256", ch.challenge, { key, dsaEncoding: "ieee-p1363" }, req.signature);
    if (!valid) {
      await audit(pool, AuditAction.LOGIN_FAILED, { userId: caller.subject, ip, detail: `bad device signature (device ${ch.device_id})` });
      throw new PermissionDeniedError("the signature does not match this device's key");
    }
    const stepUpToken = opaqueToken("su");
    const expiresAt = new Date(clockOf(core.ctx).now() + STEP_UP_TTL_MS);
    await withTransaction(pool, async (tx) => {
      await tx.query("INSERT INTO auth.step_up_tokens (token_hash, user_id, device_id, purpose, expires_at) VALUES ($1, $2, $3, $4, $5)", [
        sha256(stepUpToken), caller.subject, ch.device_id, ch.purpose, expiresAt,
      ]);
      await tx.query("UPDATE auth.devices SET last_verified_at = now() WHERE device_id = $1", [ch.device_id]);
      // A session tied to no device that proves with a key is on the phone holding it: tied to it, it ends when that
      // phone is removed, and outlives the removal of another (which ends the sessions tied to none). One tied already
      // stays so: moved to a key it added itself, it would outlive the removal of the phone it signed in naming.
      if (sessionId) await tx.query("UPDATE auth.sessions SET device_id = $1 WHERE session_id = $2 AND device_id IS NULL", [ch.device_id, sessionId]);
    });
    if (sessionId) await invalidateSessionList(core, caller.subject);
    return { stepUpToken, expiresAt: timestampFromDate(expiresAt) };
  };
}
