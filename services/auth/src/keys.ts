import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from "jose";
import { withTransaction, type Pool } from "@ttip/runtime";
import type { Sealer } from "./crypto.js";

export const ISSUER = "ttip-auth";
export const AUDIENCE = "ttip";
const ALG = "EdDSA";

interface CurrentKey {
  kid: string;
  createdAt: Date;
  privateKey: Awaited<ReturnType<typeof importJWK>>;
}

/**
 * Access-token signing keys, kept in the auth schema with the private half
 * sealed. One key signs at a time; a rotated key stays in the JWKS for the
 * overlap (the access-token lifetime plus clock skew) so tokens it signed keep
 * verifying everywhere without anyone calling auth.
 */
export class SigningKeys {
  private current?: CurrentKey;
  private loadedAt = 0;

  constructor(
    private readonly pool: Pool,
    private readonly sealer: Sealer,
    private readonly opts: { accessTokenTtlSeconds: number; maxAgeSeconds: number; overlapSkewSeconds?: number },
  ) {}

  /** Seconds a retired key stays published. */
  get overlapSeconds(): number {
    return this.opts.accessTokenTtlSeconds + (this.opts.overlapSkewSeconds ?? 300);
  }

  /** Signs an access token with the current key (rotating first if it is too old). */
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

  /** The JWKS: the signing key and every retired key still inside its overlap. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.signingKey(); // a fresh deployment publishes a key before the first login
    const { rows } = await this.pool.query(
      `SELECT public_jwk FROM auth.signing_keys
        WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)
        ORDER BY created_at DESC`,
      [this.overlapSeconds],
    );
    return { keys: rows.map((r) => r.public_jwk as JWK) };
  }

  /** Starts a new signing key and retires the current one (admin RPC, or on age). */
  async rotate(): Promise<string> {
    const kid = await withTransaction(this.pool, async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock(hashtext('ttip.auth.signing_keys'))");
      return this.insertKey(tx);
    });
    this.current = undefined;
    return kid;
  }

  private async signingKey(): Promise<CurrentKey> {
    // Re-read now and then so a rotation by another replica is picked up.
    if (this.current && Date.now() - this.loadedAt < 30_000 && !this.tooOld(this.current.createdAt)) return this.current;
    const row = await withTransaction(this.pool, async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock(hashtext('ttip.auth.signing_keys'))");
      const found = await tx.query(
        "SELECT kid, private_sealed, created_at FROM auth.signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1",
      );
      if (found.rows[0] && !this.tooOld(found.rows[0].created_at)) return found.rows[0];
      await this.insertKey(tx);
      return (await tx.query(
        "SELECT kid, private_sealed, created_at FROM auth.signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1",
      )).rows[0];
    });
    const jwk = JSON.parse(this.sealer.open(row.private_sealed)) as JWK;
    this.current = { kid: row.kid, createdAt: row.created_at, privateKey: await importJWK(jwk, ALG) };
    this.loadedAt = Date.now();
    return this.current;
  }

  private tooOld(createdAt: Date): boolean {
    return Date.now() - createdAt.getTime() > this.opts.maxAgeSeconds * 1000;
  }

  private async insertKey(tx: Pick<Pool, "query">): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(ALG, { crv: "Ed25519", extractable: true });
    const kid = randomUUID();
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALG, use: "sig" };
    const sealed = this.sealer.seal(JSON.stringify(await exportJWK(privateKey)));
    await tx.query("UPDATE auth.signing_keys SET retired_at = now() WHERE retired_at IS NULL");
    await tx.query("INSERT INTO auth.signing_keys (kid, alg, public_jwk, private_sealed) VALUES ($1, $2, $3, $4)", [
      kid, ALG, JSON.stringify(publicJwk), sealed,
    ]);
    return kid;
  }
}
