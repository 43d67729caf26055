import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Counter } from "prom-client";
import { BoundedMap, DomainError, type Cache, type Logger, type Metrics, type Pool } from "@ttip/runtime";
import {
  DynamicParametersSchema,
  QrCodeProblemSchema,
  QrProblemKind,
  TipTargetSchema,
  type DynamicParameters,
  type TipTarget,
} from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrConfig } from "./config.js";
import { normalizeShortCode, shortCodeFromDigits } from "./shortcode.js";
import { PayloadError, type PayloadSigner } from "./signing.js";
import { photoUrlOf } from "./photo.js";
import { codeById, codeIdByShortCode, type CodeRecord } from "./stores/codes.js";
import { profileOf, type ProfileRecord } from "./stores/profiles.js";

/** A short code that names no code is remembered this long, so guessing does not reach Postgres each time. */
const MISSING_TTL_SECONDS = 60;
const MISSING = "-";
/**
 * Codes whose cache keys a process remembers, so their next resolve reads them all in
 * one round trip; past it the oldest are forgotten first (about 0.3 KB each).
 */
const MAX_KEY_HINTS = 10_000;
/** Keys one DEL deletes at most: a bound on how long Redis spends on one command. */
const FORGET_KEYS_PER_DEL = 500;
/** Deletes waiting at once (a long Redis outage under many changes): past it, entries are left to expire. */
const MAX_WAITING_DROPS = 10_000;
/** The longest wait between two tries of a failed delete. */
const MAX_DROP_RETRY_MS = 60_000;

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

/** The qr counters on a registry, created once per registry (a process may start the module more than once). */
function counters(metrics: Metrics | undefined) {
  if (!metrics) return undefined;
  const get = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (metrics.registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [metrics.registry] });
  return {
    // Counted per key read (every resolve): a family, no label hash per inc.
    cache: metrics.counterFamily("ttip_qr_cache_lookups_total", "qr cache lookups by entry kind and result (hit, miss, error).", ["entry", "result"]),
    resolves: get("ttip_qr_resolves_total", "qr code resolutions by outcome (ok or the QrProblemKind).", ["outcome"]),
    invalidations: get("ttip_qr_cache_invalidations_total", "qr cache invalidations after a change, by pass (first at commit, second a moment later, retry after a failed delete).", ["pass"]),
  };
}

/** The profiles a code's resolve reads: its owner's and, for a worker's code at a venue, the venue's. */
function profileKeysOf(code: CodeRecord): string[] {
  const owner = cacheKeys.profile(code.ownerKind, code.ownerId);
  return code.ownerKind === 1 && code.venueId ? [owner, cacheKeys.profile(2, code.venueId)] : [owner];
}

/** Cache values read ahead of their use: a key absent here is read when needed. */
type Prefetched = ReadonlyMap<string, string | null>;
const NOTHING_PREFETCHED: Prefetched = new Map();

/**
 * Resolves codes through the cache (Redis in a cluster): a warm resolve reads
 * the code and its profiles in one round trip (MGET) and never touches
 * Postgres. Writers call forget in the same request that changes a code or
 * profile, after their commit; the entries themselves are never kept in the
 * process, so every replica sees a change at once.
 */
export class Resolver {
  private readonly loading = new Map<string, Promise<unknown>>();
  /**
   * Per short code or code id, the keys its last resolve read: the code's and its
   * profiles'. A short code names one code forever and a code's owner and venue never
   * change, so these stay right. They only choose what is read ahead: the profiles used
   * are always the ones the code just read names (a wrong hint costs a round trip, not an answer).
   */
  private readonly keyHints = new BoundedMap<string, { codeId: string; keys: string[] }>(MAX_KEY_HINTS);
  private readonly counters: ReturnType<typeof counters>;
  /** Second deletes waiting for their moment, by timer, and those running: a stop runs them at once, before the cache closes. */
  private readonly waitingSecondPasses = new Map<NodeJS.Timeout, () => Promise<void>>();
  private readonly runningSecondPasses = new Set<Promise<void>>();
  /** Set by stop: a delete failing then is not tried again (the cache is closing). */
  private stopping = false;

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

  /** The keys' cached values in one round trip; null for a key missing (or for all of them when the cache fails). */
  private async read(keys: readonly string[]): Promise<Map<string, string | null>> {
    const values = new Map<string, string | null>();
    try {
      const hits = await this.cache.getMany(keys);
      keys.forEach((key, i) => {
        values.set(key, hits[i]);
        this.counters?.cache.inc({ entry: key.split(":")[1], result: hits[i] === null ? "miss" : "hit" });
      });
    } catch (err) {
      // A cache outage slows resolves down; it must not fail them.
      for (const key of keys) {
        values.set(key, null);
        this.counters?.cache.inc({ entry: key.split(":")[1], result: "error" });
      }
      this.logger.warn({ err, keys }, "qr cache read failed; reading Postgres");
    }
    return values;
  }

  private async cached<T>(key: string, load: () => Promise<T | undefined>, missingTtl?: number, prefetched = NOTHING_PREFETCHED): Promise<T | undefined> {
    const hit = prefetched.has(key) ? prefetched.get(key)! : (await this.read([key])).get(key)!;
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

  code(id: string, prefetched?: Prefetched): Promise<CodeRecord | undefined> {
    return this.cached(cacheKeys.code(id), () => codeById(this.pool, id), MISSING_TTL_SECONDS, prefetched);
  }

  profile(kind: number, ownerId: string, prefetched?: Prefetched): Promise<ProfileRecord | undefined> {
    return this.cached(cacheKeys.profile(kind, ownerId), () => profileOf(this.pool, kind, ownerId), this.cfg.QR_CACHE_TTL_SECONDS, prefetched);
  }

  /** A code's owner and venue (undefined without one); the ones not prefetched are read together. */
  private async profilesOf(code: CodeRecord, prefetched: Prefetched): Promise<{ owner?: ProfileRecord; venue?: ProfileRecord; venueId?: string }> {
    const unread = profileKeysOf(code).filter((key) => !prefetched.has(key));
    const values = unread.length ? new Map([...prefetched, ...(await this.read(unread))]) : prefetched;
    const owner = await this.profile(code.ownerKind, code.ownerId, values);
    if (code.ownerKind === 2) return { owner, venue: owner, venueId: code.ownerId };
    if (!code.venueId) return { owner };
    return { owner, venue: await this.profile(2, code.venueId, values), venueId: code.venueId };
  }

  /** Remembers the keys a code's resolve read, under its short code or id (the oldest hint goes when full: BoundedMap). */
  private hint(lookup: string, code: CodeRecord): void {
    if (this.keyHints.has(lookup)) return;
    this.keyHints.set(lookup, { codeId: code.id, keys: [cacheKeys.code(code.id), ...profileKeysOf(code)] });
  }

  async codeIdForShortCode(shortCode: string): Promise<string | undefined> {
    // A short code names one code forever, so this mapping is never invalidated, only a "missing" mark.
    return this.cached(cacheKeys.short(shortCode), () => codeIdByShortCode(this.pool, shortCode), MISSING_TTL_SECONDS);
  }

  /**
   * Drops cached entries after a change committed, and again a moment later:
   * a resolve that read the old row just before the commit may write it back
   * after the first delete, and a revoked code must not resolve for as long as its entry lives.
   */
  async forget(...keys: string[]): Promise<void> {
    await this.drop(keys, "first");
    this.dropLater(keys, this.cfg.QR_CACHE_REFORGET_MS, Date.now() + this.cfg.QR_CACHE_TTL_SECONDS * 1000, "second");
  }

  /** Deletes the keys, one DEL per slice (a venue's staff removal forgets all its codes); answers those it could not. */
  private async drop(keys: readonly string[], pass: "first" | "second" | "retry"): Promise<string[]> {
    const failed: string[] = [];
    for (let i = 0; i < keys.length; i += FORGET_KEYS_PER_DEL) {
      const slice = keys.slice(i, i + FORGET_KEYS_PER_DEL);
      await this.cache.del(...slice).catch((err) => {
        failed.push(...slice);
        this.logger.error({ err, keys: slice, pass }, "qr cache invalidation failed; tried again");
      });
    }
    this.counters?.invalidations.inc({ pass });
    return failed;
  }

  /**
   * Deletes the keys again in `delayMs`: the second pass, all of them; then, while deletes fail (Redis down or mute),
   * those that failed, twice as long apart each time up to a minute, until the entries have expired anyway (`until`).
   * Before, a failed delete was only logged: a revoked code, or a blocked worker's, took tips while its entry lived.
   */
  private dropLater(keys: string[], delayMs: number, until: number, pass: "second" | "retry"): void {
    if (this.stopping) return;
    // Every change's second pass is kept; past the bound, retries are left to expire (a long outage, many changes).
    if (pass === "retry" && this.waitingSecondPasses.size >= MAX_WAITING_DROPS) {
      this.logger.error({ keys: keys.slice(0, 10), count: keys.length }, `qr cache invalidation dropped: ${MAX_WAITING_DROPS} waiting already; the entries expire by themselves`);
      return;
    }
    const run = () => {
      const running = this.drop(keys, pass)
        .then((failed) => {
          const next = Math.min(delayMs * 2, MAX_DROP_RETRY_MS, until - Date.now());
          if (failed.length && next > 0) this.dropLater(failed, next, until, "retry");
        })
        .finally(() => this.runningSecondPasses.delete(running));
      this.runningSecondPasses.add(running);
      return running;
    };
    const timer = setTimeout(() => {
      this.waitingSecondPasses.delete(timer);
      void run();
    }, delayMs);
    timer.unref();
    this.waitingSecondPasses.set(timer, run);
  }

  /**
   * Runs the second deletes still waiting and waits for those running: at the
   * service's stop, so none is lost with the process or sent to a closed cache.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const [timer, run] of this.waitingSecondPasses) {
      clearTimeout(timer);
      void run();
    }
    this.waitingSecondPasses.clear();
    await Promise.all([...this.runningSecondPasses]);
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
    let lookup: string;
    let prefetched = NOTHING_PREFETCHED;
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
      lookup = `id:${claims.qrCodeId}`;
      const hint = this.keyHints.get(lookup);
      if (hint) prefetched = await this.read(hint.keys);
      code = await this.code(claims.qrCodeId, prefetched);
      if (!code) throw problem(Code.NotFound, "no such QR code", QrProblemKind.UNKNOWN_CODE, claims.qrCodeId);
      parameters = claims.parameters;
    } else {
      const typed = normalizeShortCode(input.value);
      // Dialled as digits from a card's USSD string (a phone dials no letters), or typed as printed.
      const shortCode = shortCodeFromDigits(typed) ?? typed;
      lookup = `short:${shortCode}`;
      const hint = this.keyHints.get(lookup);
      if (hint) {
        prefetched = await this.read(hint.keys);
        code = await this.code(hint.codeId, prefetched);
        // Never expected (a short code names one code forever); if it happens, the short code is looked up again.
        if (code?.shortCode !== shortCode) {
          this.keyHints.delete(lookup);
          prefetched = NOTHING_PREFETCHED;
          code = undefined;
        }
      }
      if (!code) {
        const id = await this.codeIdForShortCode(shortCode);
        code = id ? await this.code(id) : undefined;
      }
      if (!code) throw problem(Code.NotFound, `no QR code has the short code ${shortCode}`, QrProblemKind.UNKNOWN_CODE);
    }
    if (code.status === 2) {
      throw problem(Code.FailedPrecondition, "this QR code was replaced by a newer one", QrProblemKind.ROTATED, code.id, code.replacedBy ?? "");
    }
    if (code.status === 3) throw problem(Code.FailedPrecondition, "this QR code was revoked", QrProblemKind.REVOKED, code.id);
    if (code.expiresAt !== null && code.expiresAt <= Date.now()) {
      throw problem(Code.FailedPrecondition, "this QR code has expired", QrProblemKind.EXPIRED, code.id);
    }
    const { owner, venue, venueId } = await this.profilesOf(code, prefetched);
    const inactive = inactiveProblem(code.ownerKind, owner, venueId, venue);
    if (inactive !== undefined) {
      throw problem(Code.FailedPrecondition, inactive === QrProblemKind.OWNER_INACTIVE ? "this worker is not taking tips" : "this venue is not taking tips", inactive, code.id);
    }
    assert(owner, "an owner taking tips was read");
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
    this.hint(lookup, code);
    return { target, code };
  }
}

/** Tips are asked in the venue's currency when a venue is involved, else the worker's. */
/**
 * Whether a code's owner, or the venue a worker's code is at, is switched off (OWNER_INACTIVE or VENUE_INACTIVE);
 * undefined when both take tips. One rule for a scan and for a paybill payment (MatchAccountReference).
 */
export function inactiveProblem(ownerKind: number, owner: ProfileRecord | undefined, venueId: string | null | undefined, venue: ProfileRecord | undefined): QrProblemKind | undefined {
  if (!owner?.active || owner.blocked) return ownerKind === 2 ? QrProblemKind.VENUE_INACTIVE : QrProblemKind.OWNER_INACTIVE;
  return venueId && !venue?.active ? QrProblemKind.VENUE_INACTIVE : undefined;
}

export function targetCurrency(owner: ProfileRecord | undefined, venue: ProfileRecord | undefined): string {
  return venue?.currency ?? owner?.currency ?? "KES";
}

export function emptyParameters(): DynamicParameters {
  return create(DynamicParametersSchema);
}
