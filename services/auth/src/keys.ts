import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from "jose";
import { type Clock, lockForTransaction, type Pool, type Queryable, systemClock, withTransaction } from "@ttip/runtime";
import type { Sealer } from "./crypto.js";

export const ISSUER = "ttip-auth";
export const AUDIENCE = "ttip";
const ALG = "EdDSA";
const LOCK = "ttip.auth.signing_keys";
// $1 is the service clock's now: activation and retirement are rules, read on the clock a test moves.
const ACTIVE = `SELECT kid, private_sealed, activates_at FROM auth.signing_keys
                 WHERE activates_at <= $1 AND (retired_at IS NULL OR retired_at > $1)
                 ORDER BY activates_at DESC LIMIT 1`;

interface CurrentKey {
  kid: string;
  activatesAt: Date;
  privateKey: Awaited<ReturnType<typeof importJWK>>;
}

export interface SigningKeyOptions {
  accessTokenTtlSeconds: number;
  /** Rotate when the signing key is older than this. */
  maxAgeSeconds: number;
  /** How long a new key is published before it signs (above verifiers' JWKS refetch cool-down, 30 s at the gateway). */
  activationSeconds: number;
  /** Clock skew allowed for on top of the access-token lifetime. */
  overlapSkewSeconds?: number;
}

/**
 * Access-token signing keys, kept in the auth schema with the private half
 * sealed. One key signs at a time. A rotation publishes the next key first
 * and switches to it after `activationSeconds`; the retired key stays in the
 * JWKS for the overlap (access-token lifetime plus skew), so every token keeps
 * verifying everywhere without anyone calling auth.
 */
export class SigningKeys {
  private current?: CurrentKey;
  private validUntil = 0;

  constructor(
    private readonly pool: Pool,
    private readonly sealer: Sealer,
    private readonly opts: SigningKeyOptions,
    /** When a key activates, retires and ages (tokens' iat/exp stay on the wall clock their verifiers read). */
    private readonly clock: Clock = systemClock,
  ) {}

  /** Seconds a retired key stays published. */
  get overlapSeconds(): number {
    return this.opts.accessTokenTtlSeconds + (this.opts.overlapSkewSeconds ?? 300);
  }

  /** Signs an access token with the active key. */
  async sign(claims: JWTPayload & { sub: string }, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    const key = await this.signingKey();
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: ALG, kid: key.kid, typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .setJti(randomUUID())
      .sign(key.privateKey);
    return { token, expiresAt: new Date((now + ttlSeconds) * 1000) };
  }

  /** The JWKS: the active key, the next one if a rotation is pending, and retired keys inside the overlap. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.signingKey(); // a fresh deployment publishes a key before the first login
    const { rows } = await this.pool.query(
      `SELECT public_jwk FROM auth.signing_keys
        WHERE retired_at IS NULL OR retired_at > $2::timestamptz - make_interval(secs => $1)
        ORDER BY activates_at DESC`,
      [this.overlapSeconds, new Date(this.clock.now())],
    );
    return { keys: rows.map((r) => r.public_jwk as JWK) };
  }

  /** Publishes a new key that signs after the activation delay, and retires the current one then (admin RPC). */
  async rotate(): Promise<string> {
    const kid = await withTransaction(this.pool, async (tx) => {
      await lockForTransaction(tx, LOCK);
      return this.insertKey(tx, this.opts.activationSeconds, new Date(this.clock.now()));
    });
    this.validUntil = 0;
    return kid;
  }

  private async signingKey(): Promise<CurrentKey> {
    // Re-read now and then, and exactly when a pending key activates, so rotations by any replica are seen.
    if (this.current && this.clock.now() < this.validUntil) return this.current;
    const row = await withTransaction(this.pool, async (tx) => {
      await lockForTransaction(tx, LOCK);
      const now = new Date(this.clock.now());
      let active = (await tx.query(ACTIVE, [now])).rows[0];
      if (!active) {
        // The very first key signs at once: nobody can have cached an empty JWKS for long.
        await this.insertKey(tx, 0, now);
        active = (await tx.query(ACTIVE, [now])).rows[0];
      } else if (now.getTime() - active.activates_at.getTime() > this.opts.maxAgeSeconds * 1000) {
        const pending = await tx.query("SELECT 1 FROM auth.signing_keys WHERE activates_at > $1", [now]);
        if (!pending.rowCount) await this.insertKey(tx, this.opts.activationSeconds, now);
      }
      const next = await tx.query("SELECT min(activates_at) AS at FROM auth.signing_keys WHERE activates_at > $1", [now]);
      return { ...active, next_at: next.rows[0].at as Date | null };
    });
    const jwk = JSON.parse(this.sealer.open(row.private_sealed)) as JWK;
    this.current = { kid: row.kid, activatesAt: row.activates_at, privateKey: await importJWK(jwk, ALG) };
    this.validUntil = Math.min(this.clock.now() + 5_000, row.next_at ? row.next_at.getTime() : Infinity);
    return this.current;
  }

  private async insertKey(tx: Queryable, activationSeconds: number, now: Date): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(ALG, { crv: "Ed25519", extractable: true });
    const kid = randomUUID();
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALG, use: "sig" };
    const sealed = this.sealer.seal(JSON.stringify(await exportJWK(privateKey)));
    const { rows } = await tx.query(
      `INSERT INTO auth.signing_keys (kid, alg, public_jwk, private_sealed, activates_at)
       VALUES ($1, $2, $3, $4, $6::timestamptz + make_interval(secs => $5)) RETURNING activates_at`,
      [kid, ALG, JSON.stringify(publicJwk), sealed, activationSeconds, now],
    );
    // Every other key stops signing when this one starts (a pending one included, so the newest wins).
    await tx.query("UPDATE auth.signing_keys SET retired_at = $2 WHERE kid <> $1 AND (retired_at IS NULL OR retired_at > $2)", [
      kid, rows[0].activates_at,
    ]);
    return kid;
  }
}
