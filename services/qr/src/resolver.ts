import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Counter } from "prom-client";
import { DomainError, type Cache, type Logger, type Metrics, type Pool } from "@ttip/runtime";
import {
  DynamicParametersSchema,
  QrCodeProblemSchema,
  QrProblemKind,
  TipTargetSchema,
  type DynamicParameters,
  type TipTarget,
} from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrConfig } from "./config.js";
import { normalizeShortCode } from "./shortcode.js";
import { PayloadError, type PayloadSigner } from "./signing.js";
import { photoUrlOf } from "./photo.js";
import { codeById, codeIdByShortCode, type CodeRecord } from "./stores/codes.js";
import { profileOf, type ProfileRecord } from "./stores/profiles.js";

/** A short code that names no code is remembered this long, so guessing does not reach Postgres each time. */
const MISSING_TTL_SECONDS = 60;
const MISSING = "-";

export const cacheKeys = {
  code: (id: string) => `qr:code:${id}`,
  short: (shortCode: string) => `qr:short:${shortCode}`,
  profile: (kind: number, ownerId: string) => `qr:profile:${kind}:${ownerId}`,
};

/** Why a code cannot be tipped, as a QrCodeProblem detail the tip page branches on. */
export class QrProblemError extends DomainError {
  readonly reason = "QR_CODE_PROBLEM";

  constructor(
    readonly code: Code,
    message: string,
    readonly kind: QrProblemKind,
    readonly qrCodeId = "",
    readonly replacedBy = "",
  ) {
    super(message, { kind: QrProblemKind[kind] });
  }

  override toConnectError(): ConnectError {
    const err = super.toConnectError();
    err.details.push({ desc: QrCodeProblemSchema, value: create(QrCodeProblemSchema, { kind: this.kind, qrCodeId: this.qrCodeId, replacedByQrCodeId: this.replacedBy }) });
    return err;
  }
}

export function problem(code: Code, message: string, kind: QrProblemKind, qrCodeId = "", replacedBy = ""): QrProblemError {
  return new QrProblemError(code, message, kind, qrCodeId, replacedBy);
}

/**
 * Resolves codes through the cache (Redis in a cluster): a warm resolve reads
 * two or three keys and never touches Postgres. Writers call forget* in the
 * same request that changes a code or profile, after their commit.
 */
/** The qr counters on a registry, created once per registry (a process may start the module more than once). */
function counters(metrics: Metrics | undefined) {
  if (!metrics) return undefined;
  const get = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (metrics.registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [metrics.registry] });
  return {
    cache: get("ttip_qr_cache_lookups_total", "qr cache lookups by entry kind and result (hit, miss, error).", ["entry", "result"]),
    resolves: get("ttip_qr_resolves_total", "qr code resolutions by outcome (ok or the QrProblemKind).", ["outcome"]),
    invalidations: get("ttip_qr_cache_invalidations_total", "qr cache invalidations after a change, by pass (first at commit, second a moment later).", ["pass"]),
  };
}

export class Resolver {
  private readonly loading = new Map<string, Promise<unknown>>();
  private readonly counters: ReturnType<typeof counters>;

  constructor(
    private readonly pool: Pool,
    private readonly cache: Cache,
    private readonly signer: PayloadSigner,
    private readonly cfg: QrConfig,
    private readonly logger: Logger,
    metrics?: Metrics,
  ) {
    this.counters = counters(metrics);
  }

  private async cached<T>(key: string, load: () => Promise<T | undefined>, missingTtl?: number): Promise<T | undefined> {
    let hit: string | null = null;
    const entry = key.split(":")[1];
    try {
      hit = await this.cache.get(key);
      this.counters?.cache.inc({ entry, result: hit === null ? "miss" : "hit" });
    } catch (err) {
      // A cache outage slows resolves down; it must not fail them.
      this.counters?.cache.inc({ entry, result: "error" });
      this.logger.warn({ err, key }, "qr cache read failed; reading Postgres");
    }
    if (hit === MISSING) return undefined;
    if (hit !== null) return JSON.parse(hit) as T;
    // Concurrent misses on one key share one Postgres read (a popular code after a change).
    let pending = this.loading.get(key) as Promise<T | undefined> | undefined;
    if (!pending) {
      pending = (async () => {
        const value = await load();
        const ttl = value === undefined ? missingTtl : this.cfg.QR_CACHE_TTL_SECONDS;
        if (ttl !== undefined) {
          await this.cache.set(key, value === undefined ? MISSING : JSON.stringify(value), ttl).catch((err) => {
            this.logger.warn({ err, key }, "qr cache write failed");
          });
        }
        return value;
      })().finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  code(id: string): Promise<CodeRecord | undefined> {
    return this.cached(cacheKeys.code(id), () => codeById(this.pool, id), MISSING_TTL_SECONDS);
  }

  profile(kind: number, ownerId: string): Promise<ProfileRecord | undefined> {
    return this.cached(cacheKeys.profile(kind, ownerId), () => profileOf(this.pool, kind, ownerId), this.cfg.QR_CACHE_TTL_SECONDS);
  }

  async codeIdForShortCode(shortCode: string): Promise<string | undefined> {
    // A short code names one code forever, so this mapping is never invalidated, only a "missing" mark.
    return this.cached(cacheKeys.short(shortCode), () => codeIdByShortCode(this.pool, shortCode), MISSING_TTL_SECONDS);
  }

  /**
   * Drops cached entries after a change committed, and again a moment later:
   * a resolve that read the old row just before the commit may write it back
   * after the first delete, and a revoked code must not resolve for 24 h.
   */
  async forget(...keys: string[]): Promise<void> {
    const drop = async (pass: "first" | "second") => {
      for (const key of keys) {
        await this.cache.del(key).catch((err) => this.logger.error({ err, key }, "qr cache invalidation failed"));
      }
      this.counters?.invalidations.inc({ pass });
    };
    await drop("first");
    setTimeout(() => void drop("second"), this.cfg.QR_CACHE_REFORGET_MS).unref();
  }

  /**
   * What the tip page needs, after checking signature, expiry, status and
   * that the owner (and venue) are active. Every failure is a distinct error
   * with a QrCodeProblem detail.
   */
  async resolve(input: { case: "shortCode" | "payload"; value: string }): Promise<{ target: TipTarget; code: CodeRecord }> {
    try {
      const resolved = await this.resolveUncounted(input);
      this.counters?.resolves.inc({ outcome: "ok" });
      return resolved;
    } catch (err) {
      const kind = err instanceof QrProblemError ? err.kind : undefined;
      this.counters?.resolves.inc({ outcome: kind === undefined ? "error" : QrProblemKind[kind].toLowerCase() });
      throw err;
    }
  }

  private async resolveUncounted(input: { case: "shortCode" | "payload"; value: string }): Promise<{ target: TipTarget; code: CodeRecord }> {
    let code: CodeRecord | undefined;
    let parameters: DynamicParameters | undefined;
    if (input.case === "payload") {
      let claims;
      try {
        claims = this.signer.verify(input.value);
      } catch (err) {
        if (err instanceof PayloadError) {
          throw problem(Code.InvalidArgument, `payload: ${err.message}`, QrProblemKind.TAMPERED);
        }
        throw err;
      }
      if (claims.expiresAt !== undefined && claims.expiresAt * 1000 <= Date.now()) {
        throw problem(Code.FailedPrecondition, "this QR code has expired", QrProblemKind.EXPIRED, claims.qrCodeId);
      }
      code = await this.code(claims.qrCodeId);
      if (!code) throw problem(Code.NotFound, "no such QR code", QrProblemKind.UNKNOWN_CODE, claims.qrCodeId);
      parameters = claims.parameters;
    } else {
      const id = await this.codeIdForShortCode(normalizeShortCode(input.value));
      code = id ? await this.code(id) : undefined;
      if (!code) throw problem(Code.NotFound, `no QR code has the short code ${normalizeShortCode(input.value)}`, QrProblemKind.UNKNOWN_CODE);
    }
    if (code.status === 2) {
      throw problem(Code.FailedPrecondition, "this QR code was replaced by a newer one", QrProblemKind.ROTATED, code.id, code.replacedBy ?? "");
    }
    if (code.status === 3) throw problem(Code.FailedPrecondition, "this QR code was revoked", QrProblemKind.REVOKED, code.id);
    if (code.expiresAt !== null && code.expiresAt <= Date.now()) {
      throw problem(Code.FailedPrecondition, "this QR code has expired", QrProblemKind.EXPIRED, code.id);
    }
    const owner = await this.profile(code.ownerKind, code.ownerId);
    const venueId = code.ownerKind === 2 ? code.ownerId : code.venueId;
    const venue = venueId ? (code.ownerKind === 2 ? owner : await this.profile(2, venueId)) : undefined;
    if (!owner?.active) {
      const kind = code.ownerKind === 2 ? QrProblemKind.VENUE_INACTIVE : QrProblemKind.OWNER_INACTIVE;
      throw problem(Code.FailedPrecondition, code.ownerKind === 2 ? "this venue is not taking tips" : "this worker is not taking tips", kind, code.id);
    }
    if (venueId && !venue?.active) {
      throw problem(Code.FailedPrecondition, "this venue is not taking tips", QrProblemKind.VENUE_INACTIVE, code.id);
    }
    parameters ??= fromBinary(DynamicParametersSchema, Buffer.from(code.parameters, "base64"));
    const currency = targetCurrency(owner, venue);
    // A fixed amount leaves nothing to choose; otherwise the code's amounts or the configured ones.
    const suggested = parameters.fixedAmount
      ? []
      : parameters.suggestedAmounts.length
        ? parameters.suggestedAmounts
        : this.cfg.QR_DEFAULT_SUGGESTED_AMOUNTS.map((amountMinor) => ({ amountMinor, currency }));
    const target = create(TipTargetSchema, {
      qrCodeId: code.id,
      ownerKind: code.ownerKind,
      workerId: code.ownerKind === 1 ? code.ownerId : "",
      venueId: venueId ?? "",
      displayName: owner.displayName,
      // An uploaded photo wins over a link; a profile cached before either existed has neither.
      photoUrl: photoUrlOf(this.cfg.QR_TIP_BASE_URL, owner.ownerKind, owner.ownerId, owner.photoSha256 ?? "") || owner.photoUrl,
      venueName: venue?.displayName ?? "",
      currency,
      suggestedAmounts: suggested,
      fixedAmount: parameters.fixedAmount,
      table: parameters.table,
      shift: parameters.shift,
      shared: code.ownerKind === 2,
      role: owner.role ?? "",
    });
    return { target, code };
  }
}

/** Tips are asked in the venue's currency when a venue is involved, else the worker's. */
export function targetCurrency(owner: ProfileRecord | undefined, venue: ProfileRecord | undefined): string {
  return venue?.currency ?? owner?.currency ?? "KES";
}

export function emptyParameters(): DynamicParameters {
  return create(DynamicParametersSchema);
}
